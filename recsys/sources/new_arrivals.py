"""New arrivals: items launched lately (``first_seen`` within ``days`` of the request), newest
first: how an item nobody has bought yet, added to the catalog between fits, is shown."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recsys.catalog import NO_TIME
from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Parts, Source, SourceConfig, first_allowed

DAY = 86400


class NewArrivalsConfig(SourceConfig):
    depth: int = Field(20, ge=0)
    days: float = Field(30.0, gt=0)      # "new": launched in the last month


@register
class NewArrivalsSource(Source):
    name = "new_arrivals"
    config_class = NewArrivalsConfig
    config: NewArrivalsConfig

    def __init__(self, config: NewArrivalsConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        first = parts.catalog.first_seen
        dated = np.flatnonzero(first > NO_TIME)
        self.order = dated[np.argsort(-first[dated], kind="stable")]
        self._newest_first = -first[self.order]     # ascending, for a binary search

    def propose(self, query: Query, k: int) -> SourceResult:
        now = query.ctx.now
        if now is None or k <= 0 or len(self.order) == 0:
            return SourceResult.empty()
        first = self.parts.catalog.first_seen
        # the launched-lately prefix of the newest-first order (a comparison over the whole
        # catalog cost 0.6 ms a request at 100k items)
        n = np.searchsorted(self._newest_first, -(now - self.config.days * DAY), side="right")
        recent = self.order[:n]
        ids = first_allowed(recent, query.mask, k)        # launched in the future: masked
        age_days = (now - first[ids]) / DAY
        return SourceResult(ids.astype(np.int64), (1.0 / (1.0 + age_days)).astype(np.float32))

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return "new in the shop"
