"""What the item is: popularity (all-time, recent, trend), price, age, and whether it is cold."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys.catalog import NO_TIME
from recsys.features import DAY, FeatureGroup, FeatureInput, feature_group
from recsys.sources.base import Parts


@feature_group
class ItemPopularity(FeatureGroup):
    features = ("pop_all", "pop_recent", "pop_season", "trend", "is_cold")
    phrases = {"trend": "trending this week", "pop_recent": "popular this week",
               "pop_season": "popular at this time of year", "is_cold": "new in the shop"}
    zero_means_absent = frozenset({"is_cold"})

    def __init__(self, parts: Parts) -> None:
        super().__init__(parts)
        model = parts.popularity
        counts = model.item_popularity("all_time")
        # against the average item (1 = as popular as the average, log1p'd): the same scale
        # whatever the span the popularity was counted over (point in time or refitted)
        self.pop_all = _relative(counts)
        self.pop_recent = _relative(model.item_popularity("recent"))
        self.pop_season = _relative(model.item_popularity("seasonal"))
        self.trend = model.item_popularity("trend")
        self.cold = (counts == 0).astype(np.float32)

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        ids = x.ids
        return {"pop_all": self.pop_all[ids], "pop_recent": self.pop_recent[ids],
                "pop_season": self.pop_season[ids], "trend": self.trend[ids],
                "is_cold": self.cold[ids]}


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


def _relative(counts: np.ndarray) -> np.ndarray:
    total = float(counts.sum())
    scale = len(counts) / total if total > 0 else 0.0
    return np.log1p(counts * scale).astype(np.float32)
