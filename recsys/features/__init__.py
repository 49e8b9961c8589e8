"""Ranker features, each produced by name where it is computed.

A feature group (:class:`FeatureGroup`) computes a few named columns for a request's candidates;
groups register themselves with :func:`feature_group` and declare their names, the phrase a
reason uses when the feature raised an item's score, and which features mean "does not apply"
at zero. :class:`FeatureSet` lays out one matrix: per candidate source ``NAME_score`` and
``NAME_rank`` (from the pool), ``n_sources``, then every group's features. The ranker is
trained on, and saved with, :attr:`FeatureSet.names`; a bundle whose list differs from what this
code computes is refused.

The same code serves training (a context built from an event row and the session's earlier
events, history sliced strictly before the label time) and serving (context from the request,
history as stored), so a feature cannot differ between the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from recsys.context import Context
from recsys.pool import CandidatePool
from recsys.sources.base import Parts

DAY = 86400.0


@dataclass
class FeatureInput:
    """One request's candidates and context, with values several groups share."""

    ids: np.ndarray
    ctx: Context
    parts: Parts

    @cached_property
    def embeddings(self) -> np.ndarray:
        """Content embeddings (unit rows) of every item."""
        return self.parts.spaces["content"].unit

    @cached_property
    def candidate_vectors(self) -> np.ndarray:
        return self.embeddings[self.ids]


class FeatureGroup(ABC):
    """A few features computed together. ``__init__`` may precompute per-item arrays once per
    hybrid; :meth:`compute` runs per request and returns every name in ``features``."""

    features: ClassVar[tuple[str, ...]]
    phrases: ClassVar[Mapping[str, str]] = {}           # feature -> reason ("{category}" ok)
    zero_means_absent: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    @abstractmethod
    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        """Values per candidate (or one value for all), keyed by feature name."""


GROUPS: list[type[FeatureGroup]] = []


def feature_group(cls: type[FeatureGroup]) -> type[FeatureGroup]:
    """Class decorator: compute this group for every request."""
    clash = set(cls.features) & {f for g in GROUPS for f in g.features}
    if clash:
        raise ValueError(f"feature(s) {sorted(clash)} defined twice")
    GROUPS.append(cls)
    return cls


def source_feature_names(sources: tuple[str, ...]) -> tuple[str, ...]:
    return (*(f"{s}_score" for s in sources), *(f"{s}_rank" for s in sources), "n_sources")


class FeatureSet:
    """The feature matrix of a hybrid with these ``sources``."""

    def __init__(self, sources: tuple[str, ...], parts: Parts) -> None:
        self.sources = sources
        self.parts = parts
        self.groups = [cls(parts) for cls in GROUPS]
        self.names: tuple[str, ...] = (*source_feature_names(sources),
                                       *(f for g in self.groups for f in g.features))
        self.column = {name: j for j, name in enumerate(self.names)}
        self.phrases = {k: v for g in self.groups for k, v in g.phrases.items()}
        self.zero_means_absent = frozenset().union(*(g.zero_means_absent for g in self.groups))

    def build(self, pool: CandidatePool, ctx: Context) -> np.ndarray:
        """(n_candidates x len(names)) float32; NaN where a feature does not apply."""
        n, n_src = len(pool), len(self.sources)
        out = np.full((n, len(self.names)), np.nan, dtype=np.float32)
        # each source's scores relative to its best in this request: scale-free, so a ranker
        # trained over the point-in-time parts reads the refitted parts' scores the same way
        top = np.nanmax(np.abs(pool.scores), axis=0, initial=0.0) if n else np.zeros(n_src)
        out[:, :n_src] = pool.scores / np.where(top > 0, top, 1.0)
        out[:, n_src:2 * n_src] = np.where(pool.ranks > 0, pool.ranks, np.nan)
        out[:, 2 * n_src] = (pool.ranks > 0).sum(axis=1)
        x = FeatureInput(pool.ids, ctx, self.parts)
        column = self.column
        for group in self.groups:
            for name, values in group.compute(x).items():
                out[:, column[name]] = values
        return out


# the groups, in column order (importing a module registers its groups)
from recsys.features import item, repeat, session, user  # noqa: E402, F401
