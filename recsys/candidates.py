"""Candidate sources, each tagged, merged into one pool per request.

Sources (names are the feature prefixes and the keys of the explanations):

* ``cf``        the user's ALS vector (fold-in from history + context for unknown users)
* ``content``   the user's profile: pooled content embeddings of history + context items
* ``i2i_cf`` / ``i2i_content``   items near the context items (cart, current item, recent views)
* ``copurchase``  bought in the same basket as the context items or the user's recent purchases
* ``buyagain``  the user's own purchases, by frequency and recency (where repeats are allowed)
* ``popular`` / ``trending``     overall, and ``popular_cat`` in the user's or cart's categories

Every source only returns eligible items (the mask is applied inside retrieval), so filters hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

_NO_RANK = np.iinfo(np.int64).max
SOURCES: tuple[str, ...] = ("cf", "content", "i2i_cf", "i2i_content", "copurchase", "buyagain",
                            "popular", "trending", "popular_cat")


@dataclass
class SourceResult:
    ids: np.ndarray                     # int64 internal ids
    scores: np.ndarray                  # float32, higher is better
    # for explanations: the context/history item that led to each candidate (-1 when none)
    via: np.ndarray | None = None


@dataclass
class CandidatePool:
    """Merged candidates: ``ids`` (n,), per-source ``scores``/``ranks`` (n x n_sources, NaN and
    0 where a source did not propose the item), ``via`` per source (-1 when none)."""

    ids: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    via: np.ndarray
    sources: tuple[str, ...] = field(default=SOURCES)

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, source: str) -> int:
        return self.sources.index(source)


def merge(results: dict[str, SourceResult], limit: int) -> CandidatePool:
    """Union of the sources' candidates; when over ``limit``, keep items by their best rank in
    any source (round-robin fairness: each source's top items survive)."""
    present = [(s, r) for s, r in results.items() if len(r.ids)]
    n_src = len(SOURCES)
    if not present:
        return CandidatePool(np.empty(0, np.int64), np.empty((0, n_src), np.float32),
                             np.empty((0, n_src), np.float32), np.empty((0, n_src), np.int64))
    # one call per column rather than one small array per source (this runs per request)
    lengths = np.array([len(r.ids) for _, r in present])
    starts = np.cumsum(lengths) - lengths
    all_ids = np.concatenate([r.ids for _, r in present])
    src_col = np.repeat([SOURCES.index(s) for s, _ in present], lengths)
    ranks = np.arange(1, len(all_ids) + 1) - np.repeat(starts, lengths)
    scores = np.concatenate([r.scores for _, r in present]).astype(np.float32)
    via = np.concatenate([r.via if r.via is not None else np.full(len(r.ids), -1)
                          for _, r in present])
    uniq, inverse = unique_inverse(all_ids)
    best_rank = np.full(len(uniq), _NO_RANK)
    np.minimum.at(best_rank, inverse, ranks)
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
    return CandidatePool(uniq.astype(np.int64), score_m, rank_m, via_m)


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


def top_masked(scores: np.ndarray, mask: np.ndarray, k: int) -> SourceResult:
    """Top-k of a dense per-item score vector among eligible items."""
    s = np.where(mask, scores, -np.inf)
    k = min(k, int(mask.sum()))
    if k <= 0:
        return SourceResult(np.empty(0, np.int64), np.empty(0, np.float32))
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
    ids, scores = ids[ok], scores[ok]
    via = via[ok] if via is not None else None
    order = np.lexsort((ids, -scores))[:k]
    return SourceResult(ids[order], scores[order].astype(np.float32),
                        via[order] if via is not None else None)


# (query, k, allowed mask) -> the hits only, best first, no padding
# (``ItemIndex.search_trusted``)
SearchFn = Callable[[np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def from_search(search: SearchFn, query: np.ndarray | None, mask: np.ndarray,
                k: int) -> SourceResult:
    """Run a retrieval query (None = source not applicable)."""
    if query is None or k <= 0:
        return SourceResult(np.empty(0, np.int64), np.empty(0, np.float32))
    ids, scores = search(query, k, mask)
    return SourceResult(ids.astype(np.int64, copy=False), scores.astype(np.float32, copy=False))
