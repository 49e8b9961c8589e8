"""``recsys train --engine spark``: the events validated on Spark, the same bundle as pandas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyspark", reason="the Spark engine needs: pip install -e '.[spark]'")

# what differs between two fits of the same data: when, how long, and the bundle's name
VOLATILE = {"version", "created_at", "timings_seconds", "seconds", "checksums"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def assert_same_bundle(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in files:
        x, y = a / name, b / name
        if name.suffix == ".json":
            assert _stable(json.loads(x.read_text())) == _stable(json.loads(y.read_text())), name
        elif name.suffix == ".npz":
            with np.load(x) as p, np.load(y) as q:
                assert sorted(p.files) == sorted(q.files), name
                for key in p.files:
                    if p[key].dtype.kind == "f":
                        np.testing.assert_allclose(p[key], q[key], rtol=1e-5, err_msg=str(name))
                    else:
                        np.testing.assert_array_equal(p[key], q[key], err_msg=str(name))
        else:        # Parquet, FAISS indexes, LightGBM and torch models
            assert x.read_bytes() == y.read_bytes(), name


def test_spark_engine_trains_the_pandas_bundle(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main
    from recsys.data.synthetic import ShopConfig, generate_shop
    from recsys.recommender import HybridRecommender, Request

    shop = tmp_path / "shop"
    generate_shop(ShopConfig(users=200, items=80, days=30, seed=4)).save(shop)
    config = tmp_path / "train.toml"
    config.write_text('ranker_queries = 200\n[mf]\niterations = 4\nfactors = 8\neval_every = 2\n'
                      '[content]\nepochs = 1\nmax_pairs_per_epoch = 1000\nbatch_size = 256\n'
                      'dim = 16\nprogress = false\n[hybrid.ranker]\nmax_rounds = 20\n')
    for engine in ("pandas", "spark"):
        assert main(["train", "--data", str(shop), "--config", str(config), "--out",
                     str(tmp_path / engine), "--engine", engine]) == 0
    out = capsys.readouterr().out
    assert "validated on spark in " in out
    assert_same_bundle(tmp_path / "pandas", tmp_path / "spark")
    spark = HybridRecommender.load(tmp_path / "spark")
    assert spark.manifest is not None
    assert spark.manifest.data.path == str(shop)
    assert "validate_spark" in spark.manifest.timings_seconds
    pandas = HybridRecommender.load(tmp_path / "pandas")
    for user in pandas.sample_users(20):
        a, b = (r.recommend(Request(user_id=user, k=10), explain=False) for r in (pandas, spark))
        assert [(i.item_id, i.score) for i in a.items] == [(i.item_id, i.score) for i in b.items]
