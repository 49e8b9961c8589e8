"""A retrieval space: one model's item vectors and the FAISS index over them.

The hybrid has two: ``cf`` (ALS item factors; the query is the user's factor, or a fold-in of
their profile) and ``content`` (content embeddings; the query is the pooled profile). Sources ask
a space for a user's query vector and search it under the request's eligibility mask; the model
itself is never opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recsys.context import Query
from recsys.models.base import VectorModel
from recsys.pool import SourceResult
from recsys.retrieval import ItemIndex, RetrievalConfig


class Space:
    """``model``'s items, searchable by inner product (``index`` over ``model.item_vectors()``)."""

    def __init__(self, name: str, model: VectorModel, index: ItemIndex) -> None:
        self.name = name
        self.model = model
        self.index = index

    @classmethod
    def build(cls, name: str, model: VectorModel, config: RetrievalConfig,
              query_sample: np.ndarray | None = None) -> Space:
        """Index the model's item vectors; an approximate index tunes its probes on
        ``query_sample`` (real user vectors)."""
        return cls(name, model, ItemIndex.build(model.item_vectors(), config, query_sample))

    @property
    def vectors(self) -> np.ndarray:
        return self.model.item_vectors()

    @property
    def unit(self) -> np.ndarray:
        """Unit item vectors, for cosines between items."""
        return self.model.item_unit_vectors()

    @property
    def build_info(self) -> dict[str, Any]:
        return self.index.build_info_

    def user_query(self, query: Query) -> np.ndarray | None:
        """The user's vector in this space (known user, else their profile); None if none."""
        items, weights = query.profile
        return self.model.user_vector(query.ctx.user_row, items, weights)

    def search(self, vector: np.ndarray | None, k: int, query: Query) -> SourceResult:
        """Top-``k`` eligible items by inner product with ``vector`` (None: no proposals)."""
        if vector is None or k <= 0:
            return SourceResult.empty()
        ids, scores = self.index.search_trusted(vector, k, query.mask, query.n_allowed)
        return SourceResult(ids.astype(np.int64, copy=False),
                            scores.astype(np.float32, copy=False))

    def with_model(self, model: VectorModel, rows: np.ndarray) -> Space:
        """This space over a grown or re-embedded ``model``, ``rows`` changed or new."""
        return Space(self.name, model, self.index.with_vectors(model.item_vectors(), rows))

    def save(self, directory: Path) -> list[str]:
        directory.mkdir(parents=True, exist_ok=True)
        return self.index.save(directory)

    @classmethod
    def load(cls, directory: Path, name: str, model: VectorModel) -> Space:
        return cls(name, model, ItemIndex.load(directory, model.item_vectors()))
