"""How the item relates to the user's history: category and brand affinity, price against the
user's usual spend, and how much history there is."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys.context import PURCHASE
from recsys.features import FeatureGroup, FeatureInput, feature_group


@feature_group
class UserAffinity(FeatureGroup):
    features = ("price_vs_user", "cat_affinity", "brand_affinity", "user_events",
                "user_purchases", "known_user")
    phrases = {"cat_affinity": "matches your interest in {category}",
               "brand_affinity": "a brand you like",
               "price_vs_user": "in your usual price range"}
    zero_means_absent = frozenset({"cat_affinity", "brand_affinity"})

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        catalog, hist, ids = self.parts.catalog, x.ctx.history, x.ids
        bought = hist.types == PURCHASE
        spend = hist.price[bought] if bought.any() else hist.price
        spend = spend[np.isfinite(spend)]
        mean_spend = float(spend.sum()) / len(spend) if len(spend) else np.nan
        price_vs_user: np.ndarray | float = np.nan
        if np.isfinite(mean_spend) and mean_spend > 0:
            price_vs_user = catalog.price[ids] / mean_spend
        cat_aff: np.ndarray | float = np.nan
        brand_aff: np.ndarray | float = np.nan
        if len(hist):
            cat_share = np.bincount(catalog.category_codes[hist.items],
                                    minlength=len(catalog.categories)) / len(hist)
            cat_aff = cat_share[catalog.category_codes[ids]]
            brands = catalog.brand_codes[hist.items]
            brands = brands[brands >= 0]
            brand_aff = 0.0
            if len(brands):
                share = np.bincount(brands, minlength=catalog.n_brands) / len(hist)
                cand = catalog.brand_codes[ids]
                brand_aff = np.where(cand >= 0, share[np.maximum(cand, 0)], 0.0)
        return {"price_vs_user": price_vs_user, "cat_affinity": cat_aff,
                "brand_affinity": brand_aff, "user_events": float(np.log1p(len(hist))),
                "user_purchases": float(np.log1p(int(bought.sum()))),
                "known_user": float(x.ctx.known_user)}
