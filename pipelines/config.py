"""The training pipeline's config: one TOML file in ``configs/``, one section per concept.

Each section is the config model that lives next to the code it configures; unknown sections
or keys are an error (see :mod:`recsys.configfile`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from recsys import columns as C
from recsys.configfile import StrictModel, load_config
from recsys.data.interactions import InteractionConfig
from recsys.data.split import SplitConfig
from recsys.models.content import ContentConfig
from recsys.models.mf import MFConfig
from recsys.models.popularity import PopularityConfig
from recsys.recommender import HybridConfig


class PipelineConfig(StrictModel):
    split: SplitConfig = Field(default_factory=SplitConfig)
    interactions: InteractionConfig = Field(default_factory=InteractionConfig)
    # which held-out events count as relevant for early stopping and model selection: clicks and
    # beyond say more about what a shopper wants than a passing view
    target_events: tuple[str, ...] = (C.CLICK, C.ADD_TO_CART, C.PURCHASE)
    popularity: PopularityConfig = Field(default_factory=PopularityConfig)
    mf: MFConfig = Field(default_factory=MFConfig)
    content: ContentConfig = Field(default_factory=ContentConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)
    # sampled sessions of the valid split that train the ranker (bounds training time)
    ranker_queries: int = Field(20000, ge=10)


def load_pipeline_config(path: str | Path | None) -> PipelineConfig:
    return load_config(PipelineConfig, path)
