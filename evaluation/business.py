"""Business outcomes of recommendations, per user, from the evaluation window's event log.

What a shop cares about is whether recommended items were then engaged with and bought. The
interface is one long DataFrame of the window's events (in the backtest, the events after the
cutoff), the canonical event columns with ids already mapped to the evaluation's integer
indices:

==============  =====================================================================
``user_id``     row of ``recs`` the event belongs to (0..n_users-1)
``item_id``     internal item id (the ids ``recs`` holds)
``event_type``  one of :data:`recsys.columns.EVENT_TYPES`
``price``       unit price; required (not NaN) on purchases of recommended items
``quantity``    units bought; optional, 1 when the column is absent
==============  =====================================================================

Only events on an item that was in the user's top-k count ("attributed"). Per user:

* ``ctr``: recommended items the user interacted with (any of ``interaction_types``) / shown
* ``conversion``: 1 if the user bought at least one recommended item, else 0
* ``purchase_precision``: recommended items bought / shown
* ``revenue_per_rec``: attributed revenue (sum price x quantity) / shown
* ``revenue_per_user``: attributed revenue
* ``aov``: attributed revenue / attributed orders (NaN without orders)

"shown" counts non-empty slots in the top-k; a user with none gets NaN for the per-shown ratios
and 0 for conversion and revenue (an empty list earns nothing).

A shop without prices (neither the events nor the catalog has one) has no revenue to measure:
with ``revenue=False`` the revenue metrics (:data:`REVENUE`) are absent, not zero, and
:data:`NO_PRICES` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from evaluation.lists import PAD, check_recs, n_shown
from recsys import columns as C
from recsys.errors import DataError

REVENUE: tuple[str, ...] = ("revenue_per_rec", "revenue_per_user", "aov")   # need a price
NO_PRICES = ("no prices: neither the events nor the catalog has a price, so the revenue metrics "
             "(revenue_per_rec, revenue_per_user, aov) are not measured")


def is_revenue(metric: str) -> bool:
    """True for a metric that needs prices, e.g. ``"revenue_per_rec@10"``."""
    return metric.split("@")[0] in REVENUE


def _attributed(top: np.ndarray, events: pd.DataFrame) -> pd.DataFrame:
    """Events whose (user, item) is in that user's top-k."""
    users = events[C.USER_ID].to_numpy(dtype=np.int64)
    items = events[C.ITEM_ID].to_numpy(dtype=np.int64)
    n_users = top.shape[0]
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        bad = users[(users < 0) | (users >= n_users)][0]
        raise DataError(f"events {C.USER_ID} {bad} is not a row of recs (0..{n_users - 1})")
    stride = int(max(items.max(initial=0), top.max(initial=0))) + 1
    rows = np.broadcast_to(np.arange(n_users, dtype=np.int64)[:, None], top.shape)
    rec_keys = np.unique((rows * stride + top)[top != PAD])
    mask = np.isin(users * stride + items, rec_keys) & (items >= 0)
    return events.loc[mask]


def _distinct_per_user(frame: pd.DataFrame, n_users: int) -> np.ndarray:
    pairs = frame[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    return np.bincount(pairs[C.USER_ID].to_numpy(dtype=np.int64), minlength=n_users)


def business_metrics(recs: ArrayLike, events: pd.DataFrame, k: int, *,
                     interaction_types: Iterable[str] = C.EVENT_TYPES,
                     order_col: str | None = None,
                     revenue: bool = True) -> dict[str, np.ndarray]:
    """Per-user business metrics at ``k`` (see the module docstring for definitions).

    ``order_col`` names a column identifying an order (e.g. ``session_id``); without it every
    attributed purchase event counts as one order. The returned dict also holds ``orders``
    (attributed orders per user) so :func:`business_summary` can pool the AOV. Without
    ``revenue`` (a shop without prices) prices are not read and the :data:`REVENUE` metrics and
    ``orders`` are left out.

    >>> ev = pd.DataFrame({"user_id": [0, 0, 1], "item_id": [3, 3, 8],
    ...                    "event_type": ["click", "purchase", "purchase"],
    ...                    "price": [None, 10.0, 5.0], "quantity": [1, 2, 1]})
    >>> m = business_metrics([[3, 4], [5, 6]], ev, k=2)
    >>> m["revenue_per_rec@2"].tolist()  # user 0: 10 x 2 over 2 shown; user 1 bought no rec
    [10.0, 0.0]
    """
    top = check_recs(recs, k)
    missing = [c for c in (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE) if c not in events.columns]
    if missing:
        raise DataError(f"Missed columns {missing}")
    kinds = set(events[C.EVENT_TYPE].astype(str).unique())
    unknown = sorted(kinds - set(C.EVENT_TYPES))
    if unknown:
        raise DataError(f"unknown {C.EVENT_TYPE} values {unknown}; expected {C.EVENT_TYPES}")
    wanted = list(interaction_types)
    bad = sorted(set(wanted) - set(C.EVENT_TYPES))
    if bad:
        raise DataError(f"interaction_types {bad} not in {C.EVENT_TYPES}")
    if order_col is not None and order_col not in events.columns:
        raise DataError(f"Missed columns {[order_col]}")

    n_users = top.shape[0]
    shown = n_shown(top).astype(float)
    hit = _attributed(top, events)
    kind = hit[C.EVENT_TYPE].astype(str)
    interacted = _distinct_per_user(hit.loc[kind.isin(wanted)], n_users)
    bought = hit.loc[kind == C.PURCHASE]
    purchased = _distinct_per_user(bought, n_users)

    def per_shown(x: np.ndarray) -> np.ndarray:
        ratio = np.full(n_users, np.nan)
        np.divide(x, shown, out=ratio, where=shown > 0)
        return ratio

    out = {f"ctr@{k}": per_shown(interacted.astype(float)),
           f"conversion@{k}": (purchased > 0).astype(float),
           f"purchase_precision@{k}": per_shown(purchased.astype(float))}
    if not revenue:
        return out
    if len(bought) and C.PRICE not in bought.columns:
        raise DataError(f"Missed columns {[C.PRICE]} (needed for revenue)")
    price = bought[C.PRICE].to_numpy(dtype=np.float64) if len(bought) else np.empty(0)
    if np.isnan(price).any():
        row = bought.iloc[int(np.flatnonzero(np.isnan(price))[0])]
        raise DataError(f"{int(np.isnan(price).sum())} purchases of recommended items have no "
                        f"{C.PRICE} (first: user {row[C.USER_ID]}, item {row[C.ITEM_ID]}); "
                        "fill prices from the catalog first")
    qty = (bought[C.QUANTITY].to_numpy(dtype=np.float64) if C.QUANTITY in bought.columns
           else np.ones(len(bought)))
    buyer = bought[C.USER_ID].to_numpy(dtype=np.int64)
    earned = np.bincount(buyer, weights=price * qty, minlength=n_users)
    if order_col is None:
        orders = np.bincount(buyer, minlength=n_users)
    else:
        orders = np.bincount(bought[[C.USER_ID, order_col]].drop_duplicates()[C.USER_ID]
                             .to_numpy(dtype=np.int64), minlength=n_users)
    aov = np.full(n_users, np.nan)
    np.divide(earned, orders, out=aov, where=orders > 0)
    return {**out, f"revenue_per_rec@{k}": per_shown(earned),
            f"revenue_per_user@{k}": earned, f"aov@{k}": aov, "orders": orders.astype(float)}


def business_summary(per_user: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Means over users (NaN skipped), except AOV, pooled as total revenue / total orders so a
    user with one order weighs as much as one order, not as a whole user."""
    out: dict[str, float] = {}
    revenue = next((v for n, v in per_user.items() if n.startswith("revenue_per_user@")), None)
    orders = per_user.get("orders")
    for name, values in per_user.items():
        if name == "orders":
            continue
        v = np.asarray(values, dtype=float)
        if name.startswith("aov@") and revenue is not None and orders is not None:
            total = float(np.sum(orders))
            out[name] = float(np.sum(revenue)) / total if total > 0 else float("nan")
            continue
        ok = ~np.isnan(v)
        out[name] = float(v[ok].mean()) if ok.any() else float("nan")
    return out
