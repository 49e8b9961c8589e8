"""``recsys recommend`` and ``recsys evaluate`` on several workers give the 1-worker results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.recommend import recommend_batch


@pytest.fixture(scope="module")
def users_file(tiny_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    users = sorted(pd.read_parquet(tiny_shop / "events.parquet")["user_id"].astype(str).unique())
    path = tmp_path_factory.mktemp("users") / "users.txt"
    # known shoppers, an unknown one in the middle, and a header
    path.write_text("user_id\n" + "\n".join(users[:150] + ["nobody"] + users[150:300]) + "\n")
    return path


@pytest.mark.parametrize("surface", ["for_you", "buy_again"])
def test_recommend_file_is_the_same_on_two_workers(tiny_bundle: Path, users_file: Path,
                                                    tmp_path: Path, surface: str) -> None:
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    rows = recommend_batch(tiny_bundle, users_file, one, k=7, surface=surface,
                           at="2026-02-05T00:00:00", workers=1)
    assert recommend_batch(tiny_bundle, users_file, two, k=7, surface=surface,
                           at="2026-02-05T00:00:00", workers=2) == rows
    assert rows > (2000 if surface == "for_you" else 100)
    assert one.read_bytes() == two.read_bytes()
    seen = pd.read_csv(one, dtype={"user_id": str})["user_id"].unique().tolist()
    asked = users_file.read_text().split()[1:]
    assert seen == [u for u in asked if u in set(seen)]        # the input order
    assert ("nobody" in seen) == (surface == "for_you")       # popular items for a stranger


def test_cli_recommend_workers_quiet_and_progress(tiny_bundle: Path, users_file: Path,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.csv"
    assert main(["recommend", "--bundle", str(tiny_bundle), "--users", str(users_file),
                 "--out", str(out), "--workers", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""     # not a terminal, and --quiet
    assert main(["recommend", "--bundle", str(tiny_bundle), "--users", str(users_file),
                 "--out", str(out), "--workers", "2", "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("wrote ")
    assert captured.err.startswith("recommend: 301/301 shoppers (100%), ")
    assert main(["recommend", "--bundle", str(tiny_bundle), "--users", str(users_file),
                 "--out", str(out), "--workers", "0"]) == 2
    assert "--workers 0 (expected >= 1)" in capsys.readouterr().err


def assert_same_results(one: dict, two: dict, surface: str) -> None:
    assert list(one) == list(two)
    for name in one:
        for k in one[name].lists:
            np.testing.assert_array_equal(one[name].lists[k], two[name].lists[k])
        for metric, values in one[name].per_user.items():
            np.testing.assert_array_equal(values, two[name].per_user[metric],
                                          err_msg=f"{surface}/{name} {metric}")


def test_evaluate_lists_are_the_same_on_two_workers(tiny_folds: list) -> None:
    from evaluation.backtest import DEFAULT_BASELINES
    from evaluation.offline import evaluate_pipelines, scoring_pool
    from recsys.recommender import SURFACES

    fold = tiny_folds[-1]
    assert len(fold.window.users) > 50
    models = ("hybrid", *DEFAULT_BASELINES)
    one = {s: evaluate_pipelines(fold.rec, fold.window, models, (5, 10), surface=s)
           for s in SURFACES}
    with scoring_pool(fold.rec, fold.window, 2) as pool:     # as the backtest: one per fold
        for surface in SURFACES:
            assert_same_results(one[surface], evaluate_pipelines(
                fold.rec, fold.window, models, (5, 10), surface=surface, workers=pool), surface)
    assert_same_results(one["for_you"], evaluate_pipelines(      # a pool of its own
        fold.rec, fold.window, models, (5, 10), workers=2), "for_you")


def test_backtest_on_two_workers_right_after_fitting(tiny_shop: Path, tiny_folds: list) -> None:
    """Workers forked from a process that has just fitted (implicit, LightGBM and torch
    threads started, the training thread policy) score the fold as one process does."""
    from evaluation.backtest import backtest
    from recsys.data.validate import load_dataset
    from tests.conftest import tiny_pipeline_config

    fold = backtest(load_dataset(tiny_shop), tiny_pipeline_config(), models=("hybrid", "als"),
                    ks=(5, 10, 20), workers=2)[0]
    assert list(fold.window.users) == list(tiny_folds[0].window.users)
    for surface, by_model in fold.results.items():
        for name, result in by_model.items():
            for k, lists in result.lists.items():
                np.testing.assert_array_equal(
                    lists, tiny_folds[0].results[surface][name].lists[k],
                    err_msg=f"{surface}/{name}@{k}")
