"""P-Pop/G-Pop: the shopper's own basket frequency (time-decayed, normalised to their most
frequent item) plus a little of what everyone bought lately. The strongest simple baseline on
repeat-heavy shops ("A Next Basket Recommendation Reality Check", Li et al., 2023), and a
ranker feature."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Parts, Source, SourceConfig, first_allowed, from_pairs


class PPopConfig(SourceConfig):
    depth: int = Field(100, ge=0)
    # a basket this old counts half
    half_life_days: float = Field(365.0, gt=0)
    # weight of the recent popularity share (shares are small, a few % for the top item, so
    # the shopper's own items stay first and popularity orders the fill)
    popularity_weight: float = Field(0.5, ge=0)


@register
class PPopSource(Source):
    name = "ppop"
    config_class = PPopConfig
    config: PPopConfig

    def __init__(self, config: PPopConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        recent = parts.popularity.item_popularity("recent").astype(np.float64)
        self.share = recent / recent.sum() if recent.sum() > 0 else recent
        self.order = np.argsort(-self.share, kind="stable")

    def propose(self, query: Query, k: int) -> SourceResult:
        if k <= 0:
            return SourceResult.empty()
        ctx = query.ctx
        b = ctx.baskets
        fill = first_allowed(self.order, query.mask, k)
        ids = np.union1d(b.items, fill)
        scores = self.config.popularity_weight * self.share[ids]
        if len(b):
            personal = (b.n_baskets.astype(float) if ctx.now is None
                        else b.decayed(ctx.now, self.config.half_life_days))
            pos = np.searchsorted(ids, b.items)
            scores[pos] += personal / personal.max()
        return from_pairs(ids, scores, query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return ("one of your regular items" if query.ctx.baskets.count(item)
                else "popular with shoppers lately")
