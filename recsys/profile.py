"""What the served lists looked like when the ranker learned: a histogram of every feature and of
the ranking score over the top-10 items of the rankers' training queries, so live traffic can
be compared with it (population stability index, PSI).

Bins are the training values' deciles (ties merged), plus one bin for missing values, so a
feature that stops being computed shows as drift too. PSI = sum over bins of
(live - train) * ln(live / train), shares floored at 1e-4; by the usual rule of thumb under
0.1 is stable, 0.1-0.25 a moderate shift, over 0.25 a large one.

>>> # profile = FeatureProfile.fit(rows, names, scores); profile.psi(live_rows, live_scores)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from recsys.persist import field, read_meta, write_meta

KIND = "feature_profile"
FORMAT_VERSION = 1
SCORE = "score"           # the ranking score's entry
_FLOOR = 1e-4


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.empty(0)
    return np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin: len(edges) + 1 value bins, then the missing-value bin."""
    finite = np.isfinite(values)
    counts = np.bincount(np.searchsorted(edges, values[finite], side="right"),
                         minlength=len(edges) + 1).astype(np.float64)
    counts = np.append(counts, np.count_nonzero(~finite))
    return counts / max(counts.sum(), 1.0)


def psi(train: np.ndarray, live: np.ndarray) -> float:
    p, q = np.maximum(train, _FLOOR), np.maximum(live, _FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


class FeatureProfile:
    """Per feature (and ``score``): bin edges and the training share of each bin."""

    def __init__(self, edges: dict[str, np.ndarray], shares: dict[str, np.ndarray],
                 rows: int) -> None:
        self.edges = edges
        self.shares = shares
        self.rows = rows

    @classmethod
    def fit(cls, features: np.ndarray, names: Sequence[str], scores: np.ndarray,
            bins: int = 10) -> FeatureProfile:
        columns = {name: features[:, j] for j, name in enumerate(names)}
        columns[SCORE] = scores
        edges = {name: _edges(v, bins) for name, v in columns.items()}
        shares = {name: _shares(v, edges[name]) for name, v in columns.items()}
        return cls(edges, shares, len(scores))

    def live_shares(self, features: np.ndarray, names: Sequence[str], scores: np.ndarray
                    ) -> dict[str, np.ndarray]:
        """Share of live rows per bin (this profile's bins, missing last) of each profiled
        feature (and the score)."""
        columns = {name: features[:, j] for j, name in enumerate(names)}
        columns[SCORE] = scores
        return {name: _shares(values, self.edges[name])
                for name, values in columns.items() if name in self.shares}

    def psi(self, features: np.ndarray, names: Sequence[str], scores: np.ndarray
            ) -> dict[str, float]:
        """PSI of each profiled feature (and the score) for live rows of ``names`` columns."""
        return {name: psi(self.shares[name], live)
                for name, live in self.live_shares(features, names, scores).items()}

    def save(self, directory: Path) -> list[str]:
        body = {name: {"edges": self.edges[name].tolist(), "shares": self.shares[name].tolist()}
                for name in self.shares}
        return [write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION, rows=self.rows,
                           features=body)]

    @classmethod
    def load(cls, directory: Path) -> Self:
        meta = read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        body = field(meta, "features", directory / f"{KIND}.json")
        return cls({n: np.asarray(v["edges"], dtype=np.float64) for n, v in body.items()},
                   {n: np.asarray(v["shares"], dtype=np.float64) for n, v in body.items()},
                   int(meta.get("rows", 0)))


def top_rows(scores: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the ``k`` best-scored rows of each query (``groups``: query sizes)."""
    out = []
    start = 0
    for size in groups.tolist():
        block = scores[start:start + size]
        out.append(start + np.argsort(-block, kind="stable")[:k])
        start += size
    return np.concatenate(out) if out else np.empty(0, np.int64)
