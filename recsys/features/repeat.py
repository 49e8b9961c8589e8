"""The user's own purchases of the item: how often, and how long ago."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys.features import DAY, FeatureGroup, FeatureInput, feature_group


@feature_group
class RepeatPurchase(FeatureGroup):
    features = ("times_bought", "days_since_bought")
    phrases = {"times_bought": "you buy it regularly"}
    zero_means_absent = frozenset({"times_bought"})

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        ctx, ids = x.ctx, x.ids
        bought = ctx.purchased
        if len(bought) == 0:
            return {"times_bought": 0.0, "days_since_bought": np.nan}
        order = np.argsort(bought, kind="stable")
        ordered = bought[order]
        lo = np.searchsorted(ordered, ids, side="left")
        hi = np.searchsorted(ordered, ids, side="right")
        days: np.ndarray | float = np.nan
        if ctx.now is not None:
            last = ctx.purchase_times[order]
            has = hi > lo
            days = np.full(len(ids), np.nan)
            days[has] = (ctx.now - last[hi[has] - 1]) / DAY
        return {"times_bought": (hi - lo).astype(np.float64), "days_since_bought": days}
