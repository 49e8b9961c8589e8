"""The shopper's own purchases of the item (repeat vs discovery): how often, how recently
against their usual rhythm, how habitual re-buying is for this shopper and for this item."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys.features import DAY, FeatureGroup, FeatureInput, feature_group

HALF_LIVES = (7, 30, 90, 365)     # days: a week, a month, a quarter, a year
RECENT_BASKETS = 3                # "in the last few baskets"
YEAR, SEASON = 365 * DAY, 30 * DAY   # "this time last year": a month either side


@feature_group
class RepeatPurchase(FeatureGroup):
    features = ("times_bought", "baskets_bought", "basket_share",
                *(f"freq_h{h}" for h in HALF_LIVES), "days_since_bought", "usual_gap_days",
                "gap_ratio", "item_gap_ratio", "baskets_since_bought", "in_recent_baskets",
                "bought_last_season", "item_repeat_rate", "user_repeat_share", "user_baskets",
                "days_since_basket")
    phrases = {"times_bought": "you buy it regularly", "gap_ratio": "about time to restock",
               "basket_share": "you buy it regularly",
               "bought_last_season": "you bought it at this time last year"}
    zero_means_absent = frozenset({"times_bought", "baskets_bought", "basket_share",
                                   "in_recent_baskets", "bought_last_season"})

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        ctx, ids = x.ctx, x.ids
        b = ctx.baskets
        stats = self.parts.repeat
        out: dict[str, np.ndarray | float] = {
            "item_repeat_rate": stats.repeat_rate[ids],
            "user_repeat_share": b.repeat_share, "user_baskets": float(np.log1p(b.total_baskets)),
            "days_since_basket": np.nan}
        if len(b) == 0:
            return {**out, "times_bought": 0.0, "baskets_bought": 0.0, "basket_share": 0.0,
                    **{f"freq_h{h}": 0.0 for h in HALF_LIVES}, "days_since_bought": np.nan,
                    "usual_gap_days": np.nan, "gap_ratio": np.nan, "item_gap_ratio": np.nan,
                    "baskets_since_bought": np.nan, "in_recent_baskets": 0.0,
                    "bought_last_season": 0.0}
        pos, found = b.lookup(ids)

        def per_item(values: np.ndarray, missing: float) -> np.ndarray:
            return np.where(found, values[pos], missing)

        baskets = per_item(b.n_baskets.astype(np.float64), 0.0)
        # the shopper's baskets after the item's last one: recency on their own clock
        after = b.total_baskets - np.searchsorted(b.basket_times, b.last, side="right")
        recent = b.pair_time >= b.basket_times[max(b.total_baskets - RECENT_BASKETS, 0)]
        out.update(times_bought=per_item(b.events.astype(np.float64), 0.0),
                   baskets_bought=baskets, basket_share=baskets / b.total_baskets,
                   usual_gap_days=per_item(b.mean_gap_days, np.nan),
                   baskets_since_bought=per_item(after.astype(np.float64), np.nan),
                   in_recent_baskets=per_item(np.add.reduceat(recent.astype(np.float64),
                                                              b.starts), 0.0))
        if ctx.now is None:
            return {**out, **{f"freq_h{h}": np.nan for h in HALF_LIVES},
                    "days_since_bought": np.nan, "gap_ratio": np.nan, "item_gap_ratio": np.nan,
                    "bought_last_season": np.nan}
        year_ago = np.abs(ctx.now - YEAR - b.pair_time) <= SEASON
        out["bought_last_season"] = per_item(np.add.reduceat(year_ago.astype(np.float64),
                                                             b.starts), 0.0)
        for h in HALF_LIVES:
            out[f"freq_h{h}"] = per_item(b.decayed(ctx.now, h), 0.0)
        since = per_item((ctx.now - b.last) / DAY, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["gap_ratio"] = since / per_item(b.mean_gap_days, np.nan)
            out["item_gap_ratio"] = since / stats.gap_days[ids]
        out["days_since_bought"] = since
        out["days_since_basket"] = (ctx.now - float(b.basket_times[-1])) / DAY
        return out
