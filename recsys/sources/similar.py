"""Items near what is on screen: the mean of the context items (cart, current item, recent
views) searched in the ALS space (``i2i_cf``) and the content space (``i2i_content``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Source, SourceConfig


class SimilarConfig(SourceConfig):
    depth: int = Field(40, ge=0)


class _Similar(Source):
    space: ClassVar[str]
    config_class = SimilarConfig

    def propose(self, query: Query, k: int) -> SourceResult:
        items = query.ctx.context_items
        if len(items) == 0 or k <= 0:
            return SourceResult.empty()
        space = self.parts.spaces[self.space]
        unit = space.unit
        vector = unit[items].mean(axis=0)
        res = space.search(vector if np.any(vector) else None, k, query)
        if len(res.ids):   # the context item each candidate is closest to, for the reason
            res.via = items[np.argmax(unit[res.ids] @ unit[items].T, axis=1)]
        return res

    def reason(self, item: int, via: int, query: Query) -> str | None:
        if via < 0:
            return None
        return f"similar to {self.parts.catalog.name(via)} ({query.ctx.where(via)})"


@register
class SimilarCF(_Similar):
    name = "i2i_cf"
    space = "cf"


@register
class SimilarContent(_Similar):
    name = "i2i_content"
    space = "content"
