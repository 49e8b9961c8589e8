"""The candidate pool of one request: every source's proposals merged, one row per item.

Each row keeps, per source, the score it gave, its rank in that source's list (0 = the source did
not propose the item) and the context or history item that led to it (for reasons). When the
union is over the limit, items are kept by their best rank in any source, so each source's top
items survive (round-robin fairness).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NO_RANK = np.iinfo(np.int64).max


@dataclass
class SourceResult:
    """What one source proposed: internal ids, best first."""

    ids: np.ndarray                     # int64 internal ids
    scores: np.ndarray                  # float32, higher is better
    # for explanations: the context/history item that led to each candidate (-1 when none)
    via: np.ndarray | None = None

    @classmethod
    def empty(cls) -> SourceResult:
        return cls(np.empty(0, np.int64), np.empty(0, np.float32))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class CandidatePool:
    """Merged candidates: ``ids`` (n,), per-source ``scores``/``ranks`` (n x n_sources, NaN and
    0 where a source did not propose the item), ``via`` per source (-1 when none); column j is
    source ``sources[j]``."""

    ids: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    via: np.ndarray
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, source: str) -> int:
        return self.sources.index(source)


def merge(results: dict[str, SourceResult], sources: tuple[str, ...], limit: int,
          keep: frozenset[str] = frozenset()) -> CandidatePool:
    """Union of the sources' candidates (columns in ``sources`` order), cut to ``limit`` plus
    every item a ``keep`` source proposed (those always enter the pool)."""
    present = [(s, r) for s, r in results.items() if len(r.ids)]
    n_src = len(sources)
    if not present:
        return CandidatePool(np.empty(0, np.int64), np.empty((0, n_src), np.float32),
                             np.empty((0, n_src), np.float32), np.empty((0, n_src), np.int64),
                             sources)
    # one call per column rather than one small array per source (this runs per request)
    lengths = np.array([len(r.ids) for _, r in present])
    starts = np.cumsum(lengths) - lengths
    all_ids = np.concatenate([r.ids for _, r in present])
    src_col = np.repeat([sources.index(s) for s, _ in present], lengths)
    ranks = np.arange(1, len(all_ids) + 1) - np.repeat(starts, lengths)
    scores = np.concatenate([r.scores for _, r in present]).astype(np.float32)
    via = np.concatenate([r.via if r.via is not None else np.full(len(r.ids), -1)
                          for _, r in present])
    uniq, inverse = unique_inverse(all_ids)
    best_rank = np.full(len(uniq), _NO_RANK)
    np.minimum.at(best_rank, inverse, ranks)
    kept = [sources.index(s) for s, _ in present if s in keep]
    if kept:   # always in the pool: ahead of every rank, and not counted in the limit
        forced = np.isin(src_col, kept)
        best_rank[inverse[forced]] = 0
        limit += int(np.count_nonzero(best_rank == 0))
    if len(uniq) > limit:
        keep_u = np.argsort(best_rank, kind="stable")[:limit]
        remap = np.full(len(uniq), -1)
        remap[keep_u] = np.arange(limit)
        rows = remap[inverse]
        ok = rows >= 0
        uniq = uniq[keep_u]
        inverse, src_col, ranks, scores, via = rows[ok], src_col[ok], ranks[ok], scores[ok], via[ok]
    n = len(uniq)
    score_m = np.full((n, n_src), np.nan, np.float32)
    rank_m = np.zeros((n, n_src), np.float32)
    via_m = np.full((n, n_src), -1, np.int64)
    score_m[inverse, src_col] = scores
    rank_m[inverse, src_col] = ranks
    via_m[inverse, src_col] = via
    return CandidatePool(uniq.astype(np.int64), score_m, rank_m, via_m, sources)


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for a non-empty 1-D array, without its
    generic overhead (about half of it, at a few hundred values)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(len(values), dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse
