from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.business import business_metrics, business_summary
from recsys.errors import DataError

RECS = np.array([[10, 11, 12],   # u0
                 [20, 21, -1],   # u1: 2 shown
                 [30, 31, 32],   # u2: no events
                 [-1, -1, -1]])  # u3: nothing shown
EVENTS = pd.DataFrame([
    # user, item, type, price, quantity, session
    (0, 10, "view", np.nan, 1, "s1"),
    (0, 10, "click", np.nan, 1, "s1"),
    (0, 11, "purchase", 5.0, 2, "s1"),
    (0, 11, "purchase", 5.0, 1, "s1"),
    (0, 99, "view", np.nan, 1, "s1"),      # not recommended: ignored
    (1, 20, "purchase", 8.0, 1, "s2"),
    (1, 50, "purchase", 100.0, 1, "s2"),   # not recommended: ignored
    (3, 40, "purchase", 3.0, 1, "s3"),     # u3 was shown nothing
], columns=["user_id", "item_id", "event_type", "price", "quantity", "session_id"])


def test_hand_computed() -> None:
    m = business_metrics(RECS, EVENTS, k=3)
    nan = np.nan
    # u0 touched recs {10, 11} of 3 shown; u1 {20} of 2; u2 none of 3; u3 shown 0 -> NaN
    np.testing.assert_allclose(m["ctr@3"], [2 / 3, 1 / 2, 0.0, nan])
    np.testing.assert_allclose(m["conversion@3"], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(m["purchase_precision@3"], [1 / 3, 1 / 2, 0.0, nan])
    # revenue: u0 5 x 2 + 5 x 1 = 15 (item 11 twice), u1 8 x 1
    np.testing.assert_allclose(m["revenue_per_user@3"], [15.0, 8.0, 0.0, 0.0])
    np.testing.assert_allclose(m["revenue_per_rec@3"], [5.0, 4.0, 0.0, nan])
    # each purchase event is an order: u0 15 / 2, u1 8 / 1
    np.testing.assert_allclose(m["aov@3"], [7.5, 8.0, nan, nan])
    s = business_summary(m)
    assert s["ctr@3"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert s["conversion@3"] == 0.5
    assert s["revenue_per_rec@3"] == pytest.approx(3.0)       # (5 + 4 + 0) / 3
    assert s["revenue_per_user@3"] == pytest.approx(23 / 4)
    assert s["aov@3"] == pytest.approx(23 / 3)                # pooled: 23 revenue / 3 orders
    assert "orders" not in s


def test_orders_interaction_types_and_k() -> None:
    # one session = one order: u0's two purchases form one order of 15
    m = business_metrics(RECS, EVENTS, k=3, order_col="session_id")
    assert m["aov@3"][0] == 15.0
    # only purchases count as interactions: u0 touched {11} of 3
    m = business_metrics(RECS, EVENTS, k=3, interaction_types=["purchase"])
    assert m["ctr@3"][0] == pytest.approx(1 / 3)
    # k = 1: u0 shown [10] (clicked, not bought)
    m = business_metrics(RECS, EVENTS, k=1)
    assert m["ctr@1"][0] == 1.0 and m["conversion@1"][0] == 0.0
    # no quantity column: one unit each
    m = business_metrics(RECS, EVENTS.drop(columns="quantity"), k=3)
    assert m["revenue_per_user@3"][0] == 10.0


def test_errors() -> None:
    bad = EVENTS.copy()
    bad.loc[2, "price"] = np.nan
    with pytest.raises(DataError, match="have no price"):
        business_metrics(RECS, bad, k=3)
    with pytest.raises(DataError, match="unknown event_type"):
        business_metrics(RECS, EVENTS.assign(event_type="like"), k=3)
    with pytest.raises(DataError, match="not a row of recs"):
        business_metrics(RECS, EVENTS.assign(user_id=7), k=3)
    with pytest.raises(DataError, match="Missed columns"):
        business_metrics(RECS, EVENTS.drop(columns="event_type"), k=3)


def test_vectorised_matches_loop_on_random_log() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k = 200, 40, 5
    recs = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    n = 3000
    ev = pd.DataFrame({"user_id": rng.integers(0, n_users, n),
                       "item_id": rng.integers(0, n_items, n),
                       "event_type": rng.choice(["view", "click", "purchase"], n),
                       "price": rng.uniform(1, 50, n).round(2),
                       "quantity": rng.integers(1, 4, n)})
    m = business_metrics(recs, ev, k)
    for u in range(0, n_users, 17):
        mine = ev[(ev.user_id == u) & ev.item_id.isin(recs[u])]
        buys = mine[mine.event_type == "purchase"]
        assert m[f"ctr@{k}"][u] == pytest.approx(mine.item_id.nunique() / k)
        assert m[f"revenue_per_user@{k}"][u] == pytest.approx((buys.price * buys.quantity).sum())
        assert m[f"conversion@{k}"][u] == float(len(buys) > 0)


def test_without_prices_revenue_is_absent_not_zero() -> None:
    """A shop without prices: the revenue metrics are left out; the others are unchanged."""
    unpriced = EVENTS.assign(price=np.nan)
    with pytest.raises(DataError, match="have no price"):
        business_metrics(RECS, unpriced, k=3)
    m = business_metrics(RECS, unpriced.drop(columns="price"), k=3, revenue=False)
    assert set(m) == {"ctr@3", "conversion@3", "purchase_precision@3"}
    full = business_metrics(RECS, EVENTS, k=3)
    for name, values in m.items():
        np.testing.assert_array_equal(values, full[name])
