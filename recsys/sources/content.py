"""Content: items whose embeddings are near the user's profile (history and session items)."""

from __future__ import annotations

from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Source, SourceConfig


class ContentSourceConfig(SourceConfig):
    depth: int = Field(60, ge=0)


@register
class ContentSource(Source):
    name = "content"
    config_class = ContentSourceConfig

    def propose(self, query: Query, k: int) -> SourceResult:
        space = self.parts.spaces["content"]
        return space.search(space.user_query(query), k, query)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return "similar to items you interacted with"
