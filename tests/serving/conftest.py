"""Serving fixtures: a tiny synthetic shop and two tiny bundles trained on it, once per session,
and settings pointing at them (each test gets its own event store)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
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
            "control_poll_s": 0,
        }
        data.update(overrides)
        return ServingSettings.model_validate(data)

    return make


# ---------------------------------------------------------------------- PostgreSQL
POSTGRES_URL_ENV = "RECSYS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def with_schema(url: str, schema: str) -> str:
    """``url`` whose sessions use ``schema`` (libpq ``options=-csearch_path=...``)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's URL. Outside CI, no server answering is a skip; in CI, a failure."""
    import psycopg

    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        if in_ci():
            pytest.fail(f"CI is set and no PostgreSQL server answers at {url}: {reason}")
        pytest.skip(f"no PostgreSQL server answers at {url} ({reason}); CI is not set, so the "
                    f"PostgreSQL tests skip (point {POSTGRES_URL_ENV} at a server to run them)")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL to a fresh schema of its own (parallel and repeated runs never collide), dropped
    with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_schema(postgres_server, schema)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "events.db")
    return str(request.getfixturevalue("postgres_url"))
