"""What the item is: popularity (all-time, recent, trend), price, age, and whether it is cold."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys.catalog import NO_TIME
from recsys.features import DAY, FeatureGroup, FeatureInput, feature_group
from recsys.sources.base import Parts


@feature_group
class ItemPopularity(FeatureGroup):
    features = ("pop_all", "pop_recent", "trend", "is_cold")
    phrases = {"trend": "trending this week", "pop_recent": "popular this week",
               "is_cold": "new in the shop"}
    zero_means_absent = frozenset({"is_cold"})

    def __init__(self, parts: Parts) -> None:
        super().__init__(parts)
        model = parts.popularity
        counts = model.item_popularity("all_time")
        self.pop_all = np.log1p(counts).astype(np.float32)
        self.pop_recent = np.log1p(model.item_popularity("recent")).astype(np.float32)
        self.trend = model.item_popularity("trend")
        self.cold = (counts == 0).astype(np.float32)

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        ids = x.ids
        return {"pop_all": self.pop_all[ids], "pop_recent": self.pop_recent[ids],
                "trend": self.trend[ids], "is_cold": self.cold[ids]}


@feature_group
class ItemAttributes(FeatureGroup):
    features = ("price", "log_price", "item_age_days")

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        catalog = self.parts.catalog
        price = catalog.price[x.ids]
        age: np.ndarray | float = np.nan
        if x.ctx.now is not None:
            first = catalog.first_seen[x.ids]
            age = np.where(first > NO_TIME, (x.ctx.now - first) / DAY, np.nan)
        return {"price": price, "log_price": np.log1p(price), "item_age_days": age}
