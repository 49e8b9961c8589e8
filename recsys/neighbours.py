"""Scores spread from a few items through an item x item neighbour matrix (bought together,
item-kNN): the per-request step both of those sources share."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_EMPTY = np.empty(0, np.int64)


def spread(matrix: sp.csr_matrix, items: np.ndarray, weights: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items reachable from ``items`` (rows of ``matrix``, each weighted): (ids, summed
    score, the source item that contributed most to each, for the reason)."""
    items = np.asarray(items, dtype=np.int64)
    if len(items) == 0:
        return _EMPTY, np.empty(0, np.float32), _EMPTY
    # the rows' slices of the CSR arrays, gathered directly: scipy's row indexing builds a
    # whole new matrix (~0.1 ms, most of this function at serving sizes)
    starts, ends = matrix.indptr[items], matrix.indptr[items + 1]
    lengths = ends - starts
    n_pairs = int(lengths.sum())
    if n_pairs == 0:
        return _EMPTY, np.empty(0, np.float32), _EMPTY
    pos = np.arange(n_pairs) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    w = np.ones(len(items), np.float32) if weights is None else weights.astype(np.float32)
    cand = matrix.indices[pos].astype(np.int64)
    score = (matrix.data[pos] * np.repeat(w, lengths)).astype(np.float64)
    # one sort by (candidate, largest contribution first): groups and each group's strongest
    # source at once (a float key: candidate id + a share of 1 that falls as the score grows)
    top = float(np.abs(score).max()) or 1.0
    order = np.argsort(cand + 0.45 * (1.0 - score / top), kind="quicksort")
    c, s = cand[order], score[order]
    first = np.empty(len(c), dtype=bool)
    first[0] = True
    np.not_equal(c[1:], c[:-1], out=first[1:])
    heads = np.flatnonzero(first)
    total = np.add.reduceat(s, heads).astype(np.float32)
    return c[heads], total, np.repeat(items, lengths)[order[heads]]


def padded(matrix: sp.csr_matrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """``matrix`` with empty rows and columns appended up to ``shape`` (no copy of its data):
    items added to the catalog have no neighbours until the next fit."""
    rows, cols = shape
    if rows < matrix.shape[0] or cols < matrix.shape[1]:
        raise ValueError(f"cannot shrink a {matrix.shape} matrix to {shape}")
    indptr = np.concatenate([matrix.indptr, np.full(rows - matrix.shape[0], matrix.indptr[-1])])
    return sp.csr_matrix((matrix.data, matrix.indices, indptr), shape=shape)
