"""recsys.fit: the hybrid fitted in several processes is the one fitted in one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys import fit, ranker_data
from recsys.batch import Background, Workers, check_workers
from recsys.errors import ConfigError
from recsys.recommender import HybridRecommender, Request
from tests.conftest import tiny_pipeline_config


def test_the_fit_does_not_depend_on_workers(tiny_shop: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """workers=2 forks the content model beside ALS and the sources, and asks the rankers'
    queries and fits the surfaces' rankers in two processes (the size floors that keep small
    fits in one process are lowered to 0); every part must come out equal."""
    for name in ("PARALLEL_NNZ", "PARALLEL_ROWS"):
        monkeypatch.setattr(fit, name, 0)
    monkeypatch.setattr(ranker_data, "PARALLEL_MIN", 0)
    asked: list[tuple[str, int | bool]] = []

    class QueryWorkers(Workers):
        def __init__(self, state: object, workers: int | None = 1) -> None:
            asked.append(("queries", check_workers(workers)))
            super().__init__(state, workers)

    class ContentBeside(Background):
        def __init__(self, fn: Any, state: Any, *, fork: bool = True) -> None:
            asked.append(("content", fork))
            super().__init__(fn, state, fork=fork)

    monkeypatch.setattr(ranker_data, "Workers", QueryWorkers)
    monkeypatch.setattr(fit, "Background", ContentBeside)
    alone = HybridRecommender.fit(tiny_shop, tiny_pipeline_config(), workers=1)
    assert set(asked) == {("queries", 1), ("content", False)}      # nothing forked
    asked.clear()
    forked = HybridRecommender.fit(tiny_shop, tiny_pipeline_config(), workers=2)
    assert ("queries", 2) in asked and ("content", True) in asked
    assert alone.report is not None and forked.report is not None
    for name in ("cf", "content"):
        np.testing.assert_array_equal(alone.parts.spaces[name].model.item_vectors(),
                                      forked.parts.spaces[name].model.item_vectors())
    assert set(alone.rankers) == set(forked.rankers) == {"for_you", "buy_again", "discover"}
    for surface, ranker in alone.rankers.items():
        assert ranker.booster_ is not None
        other = forked.rankers[surface].booster_
        assert other is not None
        assert ranker.booster_.model_to_string() == other.model_to_string(), surface
    assert alone.report.rankers == forked.report.rankers
    for user in alone.sample_users(20):
        ask = Request(user_id=user)
        assert [r.item_id for r in alone.recommend(ask).items] == \
            [r.item_id for r in forked.recommend(ask).items]


def test_workers_below_one_are_refused_before_any_work(tiny_shop: Path) -> None:
    with pytest.raises(ConfigError, match="--workers 0"):
        HybridRecommender.fit(tiny_shop, tiny_pipeline_config(), workers=0)


def test_recsys_train_refuses_workers_below_one(tiny_shop: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["train", "--data", str(tiny_shop), "--out", str(tmp_path / "b"),
                 "--workers", "0"]) == 2
    assert "--workers 0 (expected >= 1)" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
