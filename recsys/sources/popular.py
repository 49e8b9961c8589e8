"""Popularity sources, all from the one :class:`~recsys.models.popularity.PopularityModel`:
``popular`` (the model's configured mode), ``trending`` (rising items) and ``popular_cat``
(popular in the categories of the user's history and session)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recsys.context import Query
from recsys.pool import SourceResult
from recsys.sources import register
from recsys.sources.base import Parts, Source, SourceConfig, first_allowed, from_pairs, top_of_list


class PopularConfig(SourceConfig):
    depth: int = Field(30, ge=0)


@register
class PopularSource(Source):
    """The model's ``mode``: all-time or recent counts for everyone, or (``category``) the
    popular items of the user's own categories."""

    name = "popular"
    pipeline = "popularity"
    config_class = PopularConfig

    def __init__(self, config: SourceConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        model = parts.popularity
        self.per_user = model.config.mode == "category"
        if not self.per_user:
            self.scores = model.score(np.zeros(1, np.int64),
                                      sp.csr_matrix((1, model.n_items), dtype=np.float32))[0]
            self.order = np.argsort(-self.scores, kind="stable")

    def propose(self, query: Query, k: int) -> SourceResult:
        if not self.per_user:
            return top_of_list(self.order, self.scores, query.mask, k)
        model = self.parts.popularity
        items, weights = query.profile
        row = sp.csr_matrix((weights, items, [0, len(items)]), shape=(1, model.n_items))
        scores = model.score(np.zeros(1, np.int64), row)[0]
        order = np.argsort(-scores, kind="stable")
        return top_of_list(order, scores, query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return "popular with shoppers"


class TrendingConfig(SourceConfig):
    depth: int = Field(20, ge=0)
    # ties among rising items go to the ones already popular lately: order by
    # trend + recent_mix x log1p(recent popularity)
    recent_mix: float = Field(0.1, ge=0)


@register
class TrendingSource(Source):
    name = "trending"
    config_class = TrendingConfig
    config: TrendingConfig

    def __init__(self, config: TrendingConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        model = parts.popularity
        self.trend = model.item_popularity("trend")
        recent = np.log1p(model.item_popularity("recent"))
        self.order = np.argsort(-(self.trend + config.recent_mix * recent), kind="stable")

    def propose(self, query: Query, k: int) -> SourceResult:
        return top_of_list(self.order, self.trend, query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return "trending this week"


class PopularInCategoryConfig(SourceConfig):
    depth: int = Field(30, ge=0)


@register
class PopularInCategorySource(Source):
    """The most popular items of the user's top categories (history and session items), as
    many from each as its share of those items; ``popularity.top_categories`` of them."""

    name = "popular_cat"
    config_class = PopularInCategoryConfig

    def __init__(self, config: SourceConfig, parts: Parts) -> None:
        super().__init__(config, parts)
        codes = parts.catalog.category_codes
        self.n_categories = len(parts.catalog.categories)
        self.top = parts.popularity.config.top_categories
        self.pop = np.log1p(parts.popularity.item_popularity("all_time"))
        self.order = np.lexsort((-self.pop, codes))
        self.offsets = np.searchsorted(codes[self.order], np.arange(self.n_categories + 1))

    def propose(self, query: Query, k: int) -> SourceResult:
        ctx = query.ctx
        items = np.concatenate([ctx.history.items, ctx.context_items])
        if len(items) == 0 or k == 0:
            return SourceResult.empty()
        counts = np.bincount(self.parts.catalog.category_codes[items],
                             minlength=self.n_categories)
        top = np.argsort(-counts, kind="stable")[:self.top]   # ties: the lower code first
        top = top[counts[top] > 0]
        share = counts[top] / counts[top].sum()
        ids, scores = [], []
        for c, s in zip(top, share, strict=True):
            members = first_allowed(self.order[self.offsets[c]:self.offsets[c + 1]],
                                    query.mask, max(1, int(round(k * s))))
            ids.append(members)
            scores.append(s * self.pop[members])
        return from_pairs(np.concatenate(ids), np.concatenate(scores), query.mask, k)

    def reason(self, item: int, via: int, query: Query) -> str | None:
        return f"popular in {self.parts.catalog.category_of(item)}"
