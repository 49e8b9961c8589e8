"""Buy again: the user's own purchases, by recency-weighted frequency (eligible only where
repeats are allowed, see :class:`~recsys.rules.RulesConfig`)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult, unique_inverse
from recsys.sources import register
from recsys.sources.base import Source, SourceConfig, from_pairs


class BuyAgainConfig(SourceConfig):
    depth: int = Field(30, ge=0)
    # a purchase this many days old counts half as much as one made now
    half_life_days: float = Field(30.0, gt=0)


@register
class BuyAgainSource(Source):
    name = "buyagain"
    config_class = BuyAgainConfig
    config: BuyAgainConfig

    def propose(self, query: Query, k: int) -> SourceResult:
        ctx = query.ctx
        bought = ctx.purchased
        if len(bought) == 0 or k <= 0:
            return SourceResult.empty()
        if ctx.now is None:   # no clock: plain counts
            uniq, counts = np.unique(bought, return_counts=True)
            return from_pairs(uniq, counts.astype(np.float32), query.mask, k)
        age_days = (ctx.now - ctx.purchase_times) / 86400.0
        recency = np.power(0.5, age_days / self.config.half_life_days)
        uniq, inv = unique_inverse(bought)
        return from_pairs(uniq, np.bincount(inv, recency), query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        times = int(np.count_nonzero(query.ctx.purchased == item))
        return f"you bought it before ({times}x)"
