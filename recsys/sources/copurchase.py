"""Bought together: items that share baskets with the context items and the user's latest
purchases (:class:`~recsys.copurchase.CoPurchase`, fitted on the training events)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np
from pydantic import Field

from recsys.context import Query
from recsys.copurchase import CoPurchase, CoPurchaseConfig
from recsys.neighbours import padded
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Parts, Source, SourceConfig, from_pairs

if TYPE_CHECKING:
    from recsys.models.base import TrainingData


class CoPurchaseSourceConfig(SourceConfig, CoPurchaseConfig):
    depth: int = Field(40, ge=0)
    # the user's most recent purchases that seed the search, with the context items
    recent_purchases: int = Field(5, ge=0)


@register
class CoPurchaseSource(Source):
    name = "copurchase"
    config_class = CoPurchaseSourceConfig
    config: CoPurchaseSourceConfig

    def __init__(self, config: CoPurchaseSourceConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        self.model = CoPurchase(config)

    def fit(self, data: TrainingData) -> Self:
        self.model.fit(data.events, len(data.items))
        return self

    def propose(self, query: Query, k: int) -> SourceResult:
        ctx = query.ctx
        recent = ctx.purchased[len(ctx.purchased) - self.config.recent_purchases:] \
            if self.config.recent_purchases else ctx.purchased[:0]
        seeds = np.unique(np.concatenate([ctx.context_items, recent]))
        if len(seeds) == 0 or k <= 0:
            return SourceResult.empty()
        ids, scores, via = self.model.scores_for(seeds)
        return from_pairs(ids, scores, query.mask, k, via)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        if via < 0:
            return None
        return f"bought together with {self.parts.catalog.name(via)} ({query.ctx.where(via)})"

    def keep_state(self, old: CoPurchaseSource, n_items: int) -> None:
        assert old.model.neighbours_ is not None
        self.model.neighbours_ = padded(old.model.neighbours_, (n_items, n_items))

    def save(self, directory: Path) -> list[str]:
        return self.model.save(directory)

    def load_state(self, directory: Path) -> Self:
        self.model = CoPurchase.load(directory, self.config)
        return self
