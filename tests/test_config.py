"""The shipped training config says what the defaults are: loading it changes nothing."""

from __future__ import annotations

from pathlib import Path

from recsys.config import TrainConfig, load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_train_toml_spells_out_the_defaults() -> None:
    assert load_train_config(str(CONFIGS / "train.toml")) == TrainConfig()
