"""Serving fixtures: a tiny synthetic shop and two tiny bundles trained on it, once per session,
and settings pointing at them (each test gets its own event store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ADMIN_KEY = "test-admin-key"
READ_KEY = "test-read-key"
WRITE_KEY = "test-write-key"
DASHBOARD_KEY = "test-dashboard-key"
EXPERIMENT = {
    "name": "pop-vs-hybrid", "salt": "test-1", "traffic": 1.0,
    "variants": [{"name": "control", "weight": 0.5, "pipeline": "popularity"},
                 {"name": "treatment", "weight": 0.5, "pipeline": "hybrid"}],
}


def _small_config(seed: int) -> Any:
    from recsys.config import TrainConfig

    return TrainConfig.model_validate({
        "mf": {"iterations": 5, "factors": 16, "eval_every": 5, "seed": seed},
        "content": {"epochs": 2, "max_pairs_per_epoch": 3000, "batch_size": 256, "dim": 16,
                    "hidden_dim": 32, "text_dim": 16, "progress": False},
        "ranker_queries": 200,
        "hybrid": {"ranker": {"max_rounds": 30}},
    })


@pytest.fixture(scope="session")
def serving_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.data.synthetic import ShopConfig, generate_shop

    out = tmp_path_factory.mktemp("serving_shop")
    generate_shop(ShopConfig(users=300, items=200, days=30, seed=1)).save(out)
    return out


@pytest.fixture(scope="session")
def serving_bundle(serving_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.train import train

    out = tmp_path_factory.mktemp("serving_bundle") / "b1"
    train(serving_shop, out, _small_config(seed=1), quiet=True)
    return out


@pytest.fixture(scope="session")
def second_bundle(serving_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another version of the same shop's model (for reloads)."""
    from pipelines.train import train

    out = tmp_path_factory.mktemp("serving_bundle") / "b2"
    train(serving_shop, out, _small_config(seed=2), quiet=True)
    return out


@pytest.fixture
def make_settings(serving_bundle: Path, tmp_path: Path) -> Any:
    """``make_settings(**overrides)``: settings for the test bundle, a fresh event store, the
    two-variant experiment and a key for every role."""
    from serving.settings import ServingSettings

    def make(**overrides: Any) -> ServingSettings:
        data: dict[str, Any] = {
            "bundles": {"default": str(serving_bundle)},
            "event_store": str(tmp_path / "events.db"),
            "experiments": [EXPERIMENT],
            "keys": {"admin": ADMIN_KEY, "read": READ_KEY, "write": WRITE_KEY,
                     "dashboard": DASHBOARD_KEY},
            "warmup_requests": 1,
            "erasure_poll_s": 0,
        }
        data.update(overrides)
        return ServingSettings.model_validate(data)

    return make
