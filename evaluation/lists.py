"""The recommendation-list contract shared by every offline metric.

A batch of recommendations is an int array ``recs`` of shape (users x K): row ``u`` holds the
internal item ids recommended to evaluation user ``u``, best first. ``-1`` marks an empty slot
(a model that had fewer than K items to offer). Empty slots keep their rank: a list
``[7, -1, 3]`` has item 3 at rank 3. An item may appear at most once per row.

Checking this once, here, lets every metric assume clean input and stay vectorised.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from recsys.errors import DataError

PAD = -1
"""Marker of an empty slot in a recommendation list."""


def check_recs(recs: ArrayLike, k: int, n_items: int | None = None) -> np.ndarray:
    """Validate ``recs`` and return its first ``k`` columns as int64 (users x k).

    Lists shorter than ``k`` are padded with ``-1`` on the right, so metrics with a ``k``
    denominator (precision) penalise a model that recommends too few items.

    Raises :class:`~recsys.errors.DataError` on a non-2-D or non-integer array, ids below ``-1``
    or (when ``n_items`` is given) ``>= n_items``, or an item repeated within a row.

    >>> check_recs([[3, 1], [2, -1]], k=3).tolist()
    [[3, 1, -1], [2, -1, -1]]
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"k must be a positive int, got {k!r}")
    arr = np.asarray(recs)
    if arr.ndim != 2:
        raise DataError(f"recs must be a 2-D array (users x K), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"recs must hold integer item ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)[:, :k]
    if arr.shape[1] < k:
        pad = np.full((arr.shape[0], k - arr.shape[1]), PAD, dtype=np.int64)
        arr = np.hstack([arr, pad])
    if arr.size == 0:
        return arr
    if arr.min() < PAD:
        row, col = np.argwhere(arr < PAD)[0]
        raise DataError(f"recs[{row}, {col}] = {arr[row, col]}: ids must be >= 0 (or -1 = empty)")
    if n_items is not None and arr.max() >= n_items:
        row, col = np.argwhere(arr >= n_items)[0]
        raise DataError(f"recs[{row}, {col}] = {arr[row, col]} is not a known item "
                        f"(n_items = {n_items})")
    srt = np.sort(arr, axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] != PAD)
    if dup.any():
        row, col = np.argwhere(dup)[0]
        raise DataError(f"recs row {row} repeats item {srt[row, col + 1]}; "
                        "an item may appear once per list")
    return arr


def n_shown(recs: np.ndarray) -> np.ndarray:
    """Number of non-empty slots per row of a checked ``recs`` (int64, users)."""
    return (recs != PAD).sum(axis=1)
