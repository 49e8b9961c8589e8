"""Item-kNN: items whose buyers overlap with the buyers of the shopper's items (BM25-weighted
co-occurrence over shoppers, implicit's ``BM25Recommender``), a classic CF baseline and the
"shoppers who bought X also bought" reason."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recsys.context import Query
from recsys.neighbours import padded, spread
from recsys.persist import read_csr, read_meta, write_csr, write_meta
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Parts, Source, SourceConfig, from_pairs

if TYPE_CHECKING:
    from recsys.models.base import TrainingData

KIND = "itemknn"
FORMAT_VERSION = 1


class ItemKNNConfig(SourceConfig):
    depth: int = Field(60, ge=0)
    neighbours: int = Field(100, ge=1)       # kept per item (implicit's K)
    k1: float = Field(1.2, gt=0)             # BM25 term saturation (implicit's default)
    b: float = Field(0.75, ge=0, le=1)       # BM25 length normalisation (implicit's default)
    # the shopper's items that seed it, heaviest first: a wholesale history of hundreds of
    # items would cost milliseconds per request and say little more
    seeds: int = Field(30, ge=1)


@register
class ItemKNNSource(Source):
    name = "itemknn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(self, config: ItemKNNConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        self.similarity: sp.csr_matrix | None = None

    def fit(self, data: TrainingData) -> Self:
        from implicit.nearest_neighbours import BM25Recommender
        from threadpoolctl import threadpool_limits

        from recsys.threads import training_threads

        c = self.config
        model = BM25Recommender(K=c.neighbours, K1=c.k1, B=c.b, num_threads=training_threads())
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            # implicit converts its own BM25-weighted COO matrix and warns about it
            warnings.filterwarnings("ignore", "Method expects CSR input")
            model.fit(sp.csr_matrix(data.matrix), show_progress=False)
        self.similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        return self

    def propose(self, query: Query, k: int) -> SourceResult:
        items, weights = query.profile
        if self.similarity is None or len(items) == 0 or k <= 0:
            return SourceResult.empty()
        if len(items) > self.config.seeds:
            keep = np.argpartition(-weights, self.config.seeds - 1)[: self.config.seeds]
            items, weights = items[keep], weights[keep]
        ids, scores, via = spread(self.similarity, items, weights)
        return from_pairs(ids, scores, query.mask, k, via)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        if via < 0 or via == item:
            return None
        return f"shoppers who bought {self.parts.catalog.name(via)} also bought it"

    def keep_state(self, old: ItemKNNSource, n_items: int) -> None:
        assert old.similarity is not None
        self.similarity = padded(old.similarity, (n_items, n_items))

    def save(self, directory: Path) -> list[str]:
        assert self.similarity is not None
        return [write_csr(directory, KIND, self.similarity),
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)]

    def load_state(self, directory: Path) -> Self:
        read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        self.similarity = read_csr(directory, KIND)
        return self
