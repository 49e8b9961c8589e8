"""Row-wise top-k: the same lists as a full sort by (score desc, item id asc), narrow or wide
rows, ties and -inf included."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.base import top_k


def sorted_top(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.arange(len(row)), -row))[:k]
    vals = row[order]
    ids = np.where(np.isfinite(vals), order, -1)
    pad = k - len(order)
    return np.r_[ids, np.full(pad, -1)], np.r_[vals, np.full(pad, -np.inf)]


@pytest.mark.parametrize("n_items", [1, 7, 300, 5_000, 40_000])
@pytest.mark.parametrize("k", [1, 20, 400])
def test_same_lists_as_a_full_sort(n_items: int, k: int) -> None:
    rng = np.random.default_rng(n_items + k)
    scores = rng.integers(0, 50, (6, n_items)).astype(np.float32)   # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0] = -np.inf                                             # nothing eligible
    scores[1, : n_items // 2] = -np.inf
    ids, vals = top_k(scores, k)
    assert ids.shape == vals.shape == (6, k) and ids.dtype == np.int64
    for row in range(6):
        want_ids, want_vals = sorted_top(scores[row], k)
        np.testing.assert_array_equal(vals[row], want_vals)
        wide = n_items > 64 * min(k, n_items)
        if wide:   # the block path breaks ties by id everywhere; the narrow one but at the k-th
            np.testing.assert_array_equal(ids[row], want_ids)
        else:
            finite = np.isfinite(want_vals) & (want_vals > want_vals[min(k, n_items) - 1])
            np.testing.assert_array_equal(ids[row][finite], want_ids[finite])


@pytest.mark.parametrize("n_items", [7, 5_000])
def test_a_given_kth_score_gives_the_same_lists(n_items: int) -> None:
    """The content model's early stopping passes each row's k-th best (from torch): ties at
    the boundary must still go by item id."""
    rng = np.random.default_rng(n_items)
    scores = rng.integers(0, 30, (5, n_items)).astype(np.float32)
    scores[1, : n_items // 2] = -np.inf
    k = min(20, n_items)
    kth = -np.sort(-scores, axis=1)[:, k - 1]
    ids, vals = top_k(scores, 20, kth=kth)
    for row in range(5):
        want_ids, want_vals = sorted_top(scores[row], 20)
        np.testing.assert_array_equal(ids[row], want_ids)
        np.testing.assert_array_equal(vals[row], want_vals)
