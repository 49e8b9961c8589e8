"""The candidate-source contract, and the helpers sources share.

A source is one class with a ``name``; it is built from its config and the hybrid's fitted
parts, may fit state of its own from training data, proposes ``(ids, scores)`` for a
:class:`~recsys.context.Query` under its eligibility mask, says in words why it proposed an item,
and saves/loads whatever state it fitted. Its proposals become two ranker features
(``{name}_score``, ``{name}_rank``), its reason becomes the item's first explanation, and it can
be served alone as a baseline pipeline (``pipeline``, default its name).

Sources only return eligible items (the mask is applied inside retrieval), so filters hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
from pydantic import Field

from recsys.configfile import StrictModel
from recsys.context import Query
from recsys.pool import SourceResult

if TYPE_CHECKING:
    from recsys.catalog import Catalog
    from recsys.models.base import TrainingData
    from recsys.models.popularity import PopularityModel
    from recsys.purchases import RepeatStats
    from recsys.space import Space


class SourceConfig(StrictModel):
    """Every source's settings; a source adds its own knobs in a subclass."""

    enabled: bool = True
    # candidates proposed per request before the pool is cut to `hybrid.candidates`
    depth: int = Field(30, ge=0)


@dataclass
class Parts:
    """The fitted parts sources are built from (shared, never copied per source)."""

    catalog: Catalog
    popularity: PopularityModel
    spaces: dict[str, Space]        # "cf": ALS factors, "content": content embeddings
    repeat: RepeatStats             # how items are re-bought across shoppers


class Source(ABC):
    """One candidate source. Subclasses set ``name`` and implement :meth:`propose` and
    :meth:`reason`; sources with state of their own also override :meth:`fit`, :meth:`save`
    and :meth:`load_state`."""

    name: ClassVar[str]
    pipeline: ClassVar[str | None] = None       # baseline pipeline name (default: ``name``)
    config_class: ClassVar[type[SourceConfig]] = SourceConfig
    # proposals never cut from the pool (the shopper's own purchases: repeat vs discovery is
    # for the ranker to learn, so every bought item must reach it)
    always_in_pool: ClassVar[bool] = False
    # baselines this source leads, with fallbacks: name -> sources, ranked source by source
    extra_pipelines: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, config: SourceConfig, parts: Parts) -> None:
        self.config = config
        self.parts = parts

    @classmethod
    def pipeline_name(cls) -> str:
        return cls.pipeline or cls.name

    def fit(self, data: TrainingData) -> Self:
        """Learn the source's own state (most sources read the shared models and need none)."""
        return self

    @abstractmethod
    def propose(self, query: Query, k: int) -> SourceResult:
        """Up to ``k`` eligible items, best first (``query.mask`` is the eligibility)."""

    @abstractmethod
    def reason(self, item: int, via: int, query: Query) -> str | None:
        """Why this source proposed ``item`` (``via``: the item that led to it, -1 = none)."""

    def rebind(self, parts: Parts) -> Self:
        """This source over new parts (the catalog changed): what it derives from the parts is
        computed again, what it fitted itself is kept (:meth:`keep_state`)."""
        new = type(self)(self.config, parts)
        new.keep_state(self, len(parts.catalog))
        return new

    def keep_state(self, old: Self, n_items: int) -> None:  # noqa: B027 - most keep none
        """Take ``old``'s fitted state, over ``n_items`` items (new items have none)."""

    def save(self, directory: Path) -> list[str]:
        """Write the source's own state; returns file names (none for stateless sources)."""
        return []

    def load_state(self, directory: Path) -> Self:
        """Read what :meth:`save` wrote."""
        return self


# ------------------------------------------------------------------ helpers sources share

def top_masked(scores: np.ndarray, mask: np.ndarray, k: int) -> SourceResult:
    """Top-k of a dense per-item score vector among eligible items."""
    s = np.where(mask, scores, -np.inf)
    k = min(k, int(mask.sum()))
    if k <= 0:
        return SourceResult.empty()
    part = np.argpartition(-s, k - 1)[:k]
    part = part[np.isfinite(s[part])]
    order = part[np.lexsort((part, -s[part]))]
    return SourceResult(order.astype(np.int64), s[order].astype(np.float32))


def first_allowed(ranked: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` items of ``ranked`` that ``mask`` allows. Scans a growing prefix: with a
    broad mask the first few k entries suffice, so a request never touches the whole list (a
    popularity list is the catalog)."""
    if k <= 0:
        return ranked[:0]
    width = 4 * k
    while True:
        head = ranked[:width]
        ids = head[mask[head]][:k]
        if len(ids) == k or width >= len(ranked):
            return ids
        width *= 8


def top_of_list(ranked: np.ndarray, scores: np.ndarray, mask: np.ndarray, k: int) -> SourceResult:
    """First k eligible items of a precomputed ranked list (popularity lists)."""
    ids = first_allowed(ranked, mask, k)
    return SourceResult(ids.astype(np.int64), scores[ids].astype(np.float32))


def from_pairs(ids: np.ndarray, scores: np.ndarray, mask: np.ndarray, k: int,
               via: np.ndarray | None = None) -> SourceResult:
    """Top-k of sparse (id, score) pairs among eligible items."""
    ok = mask[ids]
    if 0 < k < ok.sum() // 2:   # sort only the pairs at or above the k-th best score
        kth = np.partition(scores[ok], ok.sum() - k)[ok.sum() - k]
        ok &= scores >= kth
    ids, scores = ids[ok], scores[ok]
    via = via[ok] if via is not None else None
    order = np.lexsort((ids, -scores))[:k]
    return SourceResult(ids[order], scores[order].astype(np.float32),
                        via[order] if via is not None else None)
