"""Seasonal: what sold in the same weeks a year ago (``popularity.season_days`` either side of
one year before the fit), for the seasons that come back: Christmas, summer, back to school."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Parts, Source, SourceConfig, top_of_list


class SeasonalConfig(SourceConfig):
    depth: int = Field(20, ge=0)


@register
class SeasonalSource(Source):
    name = "seasonal"
    config_class = SeasonalConfig

    def __init__(self, config: SourceConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        self.scores = parts.popularity.item_popularity("seasonal")
        order = np.argsort(-self.scores, kind="stable")
        self.order = order[self.scores[order] > 0]

    def propose(self, query: Query, k: int) -> SourceResult:
        return top_of_list(self.order, self.scores, query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return "popular at this time of year"
