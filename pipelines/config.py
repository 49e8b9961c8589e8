"""The training pipeline's config: one TOML file in ``configs/``, one section per concept.

Each section is the config model that lives next to the code it configures; unknown sections
or keys are an error (see :mod:`recsys.configfile`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from recsys.configfile import StrictModel, load_config
from recsys.data.interactions import InteractionConfig
from recsys.data.split import SplitConfig


class PipelineConfig(StrictModel):
    split: SplitConfig = Field(default_factory=SplitConfig)
    interactions: InteractionConfig = Field(default_factory=InteractionConfig)


def load_pipeline_config(path: str | Path | None) -> PipelineConfig:
    return load_config(PipelineConfig, path)
