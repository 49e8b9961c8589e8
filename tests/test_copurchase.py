"""Bought-together counts on hand-made baskets, where the cosine is computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.copurchase import CoPurchase, CoPurchaseConfig
from recsys.errors import BundleError

T = pd.Timestamp("2024-01-01T00:00:00Z")


def baskets(*rows: tuple[str, int, str]) -> pd.DataFrame:
    """(basket, item, event type) rows; one user, one time."""
    return pd.DataFrame({C.SESSION_ID: [r[0] for r in rows], "item_idx": [r[1] for r in rows],
                         C.EVENT_TYPE: [r[2] for r in rows], "user_idx": 0, C.TIMESTAMP: T})


def dense(model: CoPurchase) -> np.ndarray:
    assert model.neighbours_ is not None
    return model.neighbours_.toarray()


def test_cosine_of_basket_counts() -> None:
    p = C.PURCHASE
    events = baskets(("b1", 0, p), ("b1", 1, p), ("b2", 0, p), ("b2", 1, p), ("b3", 0, p),
                     ("b3", 2, p), ("b4", 2, C.VIEW), ("b4", 1, C.VIEW))   # views do not count
    m = dense(CoPurchase().fit(events, 3))
    # item 0 in 3 baskets, 1 in 2, 2 in 1: cos(0,1) = 2 / sqrt(3 x 2), cos(0,2) = 1 / sqrt(3)
    assert m[0, 1] == pytest.approx(2 / np.sqrt(6)) and m[1, 0] == m[0, 1]
    assert m[0, 2] == pytest.approx(1 / np.sqrt(3)) and m[1, 2] == 0 and m.trace() == 0


def test_neighbours_min_count_and_basket_cap() -> None:
    p = C.PURCHASE
    events = baskets(*[(f"b{n}", i, p) for n in range(3) for i in (0, 1)], ("b9", 0, p),
                     ("b9", 2, p), ("b9", 3, p))
    assert (dense(CoPurchase(CoPurchaseConfig(min_count=2)).fit(events, 4))[0] > 0).tolist() == \
        [False, True, False, False]
    top1 = dense(CoPurchase(CoPurchaseConfig(neighbours=1)).fit(events, 4))
    assert (top1 > 0).sum(axis=1).tolist() == [1, 1, 1, 1]
    capped = dense(CoPurchase(CoPurchaseConfig(max_basket=2)).fit(events, 4))
    assert capped[0, 3] == 0 and capped[0, 2] > 0        # b9 keeps its first two items


def test_scores_for_sums_and_names_the_strongest_source() -> None:
    p = C.PURCHASE
    events = baskets(("b1", 0, p), ("b1", 2, p), ("b2", 1, p), ("b2", 2, p), ("b3", 1, p),
                     ("b3", 2, p), ("b4", 1, p), ("b4", 3, p))
    model = CoPurchase().fit(events, 4)
    ids, scores, via = model.scores_for(np.array([0, 1]))
    got = dict(zip(ids.tolist(), zip(scores.tolist(), via.tolist(), strict=True), strict=True))
    m = dense(model)
    assert got[2][0] == pytest.approx(m[0, 2] + m[1, 2]) and got[2][1] == 1  # 1 shares more
    assert got[3][1] == 1 and 0 not in got and 1 not in got


def test_save_load_round_trip_and_damage(tmp_path: Path) -> None:
    events = baskets(("b1", 0, C.PURCHASE), ("b1", 1, C.PURCHASE))
    model = CoPurchase().fit(events, 2)
    model.save(tmp_path)
    np.testing.assert_array_equal(dense(CoPurchase.load(tmp_path)), dense(model))
    (tmp_path / "copurchase.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="copurchase.npz"):
        CoPurchase.load(tmp_path)
