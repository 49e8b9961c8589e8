"""Repeat: every item the shopper bought, by recency-weighted basket frequency. Always enters
the pool (whether to re-offer an item is the ranker's call, per shopper and item, not a rule),
and alone it is the "buy again" baseline; ``buy_again_pop`` fills with popular items after."""

from __future__ import annotations

from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Source, SourceConfig, from_pairs


class RepeatConfig(SourceConfig):
    depth: int = Field(1000, ge=0)          # every item the shopper bought, up to this many
    # a basket this many days old counts half as much as one today
    half_life_days: float = Field(90.0, gt=0)


@register
class RepeatSource(Source):
    name = "repeat"
    pipeline = "buy_again"
    extra_pipelines = {"buy_again_pop": ("repeat", "popular")}
    always_in_pool = True
    config_class = RepeatConfig
    config: RepeatConfig

    def propose(self, query: Query, k: int) -> SourceResult:
        ctx = query.ctx
        b = ctx.baskets
        if len(b) == 0 or k <= 0:
            return SourceResult.empty()
        scores = (b.n_baskets.astype(float) if ctx.now is None
                  else b.decayed(ctx.now, self.config.half_life_days))
        return from_pairs(b.items, scores, query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        times = query.ctx.baskets.count(item)
        return f"you bought it before ({times}x)" if times > 1 else "you bought it before"
