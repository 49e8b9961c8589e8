"""Collaborative filtering: items near the user's ALS vector (a fold-in of the session's profile
for users the model has not seen)."""

from __future__ import annotations

from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Source, SourceConfig


class CFConfig(SourceConfig):
    depth: int = Field(100, ge=0)


@register
class CFSource(Source):
    name = "cf"
    pipeline = "als"
    config_class = CFConfig

    def propose(self, query: Query, k: int) -> SourceResult:
        space = self.parts.spaces["cf"]
        return space.search(space.user_query(query), k, query)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return "shoppers with tastes like yours bought it"
