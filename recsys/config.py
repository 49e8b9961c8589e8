"""The hybrid's config and the training config around it.

:class:`TrainConfig` is what ``HybridRecommender.fit`` takes (a ``configs/train.toml`` file, one
section per concept); :class:`HybridConfig` is its ``[hybrid]`` section, kept in the bundle and
used by every request. Every section is a strict model: an unknown key is an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializeAsAny, field_validator

from recsys import columns as C
from recsys.configfile import StrictModel, load_config
from recsys.data.interactions import InteractionConfig
from recsys.models.content import ContentConfig
from recsys.models.mf import MFConfig
from recsys.models.popularity import PopularityConfig
from recsys.models.ranker import RankerConfig
from recsys.retrieval import RetrievalConfig
from recsys.rules import RulesConfig
from recsys.sources import registered
from recsys.sources.base import SourceConfig

# The sources a hybrid runs unless its config says otherwise, in pool-column order. A new
# source is one file in recsys/sources/ plus its name here (or in a config file's
# [hybrid.sources.NAME] table).
DEFAULT_SOURCES: tuple[str, ...] = ("cf", "content", "i2i_cf", "i2i_content", "copurchase",
                                    "itemknn", "repeat", "ppop", "tifu", "popular", "trending",
                                    "seasonal", "popular_cat", "new_arrivals")


class HybridConfig(StrictModel):
    # the pool is cut to this many candidates (each source's top items kept first)
    candidates: int = Field(200, ge=1, le=5000)
    # per source: its depth (candidates proposed) and its own knobs; `enabled = false` drops it
    sources: dict[str, SerializeAsAny[SourceConfig]] = Field(default_factory=dict,
                                                             validate_default=True)
    max_context_items: int = Field(50, ge=1)     # cart + views used per request
    max_k: int = Field(100, ge=1)
    # without a ranker the sources are fused by reciprocal rank: sum of 1 / (this + rank);
    # 60 is the constant of Cormack et al. (2009), robust across very different lists
    rank_fusion_k: float = Field(60.0, gt=0)
    # product-page neighbours: weight of ALS cosine against content cosine (items with a
    # vector in both); the rest is content
    similar_cf_weight: float = Field(0.5, ge=0, le=1)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> dict[str, SourceConfig]:
        """Given tables override the defaults source by source; unknown names are an error."""
        given = dict(value or {})
        registry = registered()
        unknown = sorted(set(given) - set(registry))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown} (registered: "
                             f"{', '.join(sorted(registry))})")
        out: dict[str, SourceConfig] = {}
        for name in dict.fromkeys([*DEFAULT_SOURCES, *given]):
            raw = given.get(name, {})
            config_class = registry[name].config_class
            out[name] = raw if isinstance(raw, config_class) else config_class.model_validate(raw)
        return out

    @property
    def enabled_sources(self) -> tuple[str, ...]:
        return tuple(name for name, c in self.sources.items() if c.enabled)


class TrainConfig(StrictModel):
    """Everything ``HybridRecommender.fit`` needs besides the data (see :mod:`recsys.fit`)."""

    # the latest share of events: early stopping and the rankers' training window (what
    # shoppers did next); the served parts are then fitted again on every event
    holdout: float = Field(0.15, gt=0, lt=1)
    # False: serve the parts fitted before the holdout (faster; misses the latest weeks)
    refit: bool = True
    interactions: InteractionConfig = Field(default_factory=InteractionConfig)
    # which held-out events count as relevant for early stopping and model selection: clicks and
    # beyond say more about what a shopper wants than a passing view
    target_events: tuple[str, ...] = (C.CLICK, C.ADD_TO_CART, C.PURCHASE)
    popularity: PopularityConfig = Field(default_factory=PopularityConfig)
    mf: MFConfig = Field(default_factory=MFConfig)
    content: ContentConfig = Field(default_factory=ContentConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)
    # queries the rankers learn from, at most (horizon queries first; bounds training time)
    ranker_queries: int = Field(20000, ge=10)
    # instants in the holdout's first half at which every active shopper is asked (more
    # queries from one window; later instants see parts a little older than the query)
    ranker_cutoffs: int = Field(1, ge=1)
    # windows the rankers learn from, at most: the holdout, then windows of the same length
    # before it, each with first-stage parts fitted on the events before it (one more
    # first-stage fit per window), while the windows so far ask fewer than ranker_min_queries
    # returning shoppers. A shop whose holdout asks a few hundred shoppers learns from earlier
    # months too; a big shop's holdout alone is enough (and each window costs a fit)
    ranker_windows: int = Field(4, ge=1)
    ranker_min_queries: int = Field(4000, ge=0)
    # a training query's session context keeps its last this-many views (a product page
    # shows a short recently-viewed strip)
    ranker_context_views: int = Field(20, ge=0)


def load_train_config(path: str | None) -> TrainConfig:
    """A TOML file into :class:`TrainConfig` (``None``: the defaults)."""
    return load_config(TrainConfig, path)
