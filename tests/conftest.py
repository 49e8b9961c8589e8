"""Shared fixtures: a tiny synthetic shop and a bundle trained on it, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def tiny_pipeline_config():  # noqa: ANN201 - imported lazily to keep collection light
    from recsys.config import TrainConfig

    return TrainConfig.model_validate({
        "mf": {"iterations": 10, "factors": 16, "eval_every": 5},
        "content": {"epochs": 2, "max_pairs_per_epoch": 4000, "batch_size": 256, "dim": 32,
                    "progress": False},
        "ranker_queries": 400,
        "hybrid": {"ranker": {"max_rounds": 60}},
    })


@pytest.fixture(scope="session")
def tiny_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.data.synthetic import ShopConfig, generate_shop

    out = tmp_path_factory.mktemp("shop")
    generate_shop(ShopConfig(users=1000, items=300, days=40, seed=3)).save(out)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.train import train

    out = tmp_path_factory.mktemp("bundle") / "b"
    train(tiny_shop, out, tiny_pipeline_config(), quiet=True)
    return out


@pytest.fixture(scope="session")
def world():  # noqa: ANN201 - tests.world is imported lazily to keep collection light
    from tests.world import build_world

    return build_world()


@pytest.fixture(scope="session")
def tiny_folds(tiny_shop: Path):  # noqa: ANN201 - a list of evaluation.backtest.Fold
    """One backtest fold of the tiny shop: fitted before the default cutoff, every baseline
    on every surface."""
    from evaluation.backtest import DEFAULT_BASELINES, backtest
    from recsys.data.validate import load_dataset

    return backtest(load_dataset(tiny_shop), tiny_pipeline_config(),
                    models=("hybrid", *DEFAULT_BASELINES), ks=(5, 10, 20))
