"""The backtest: cutoffs, folds, the strong simple baselines, the verdict, on the tiny shop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.backtest import DEFAULT_BASELINES, cutoffs, pooled
from evaluation.bootstrap import paired_lift
from evaluation.verdict import verdict
from recsys import columns as C
from recsys.errors import DataError


def events(n: int = 1000) -> pd.DataFrame:
    return pd.DataFrame({C.TIMESTAMP: pd.date_range("2024-01-01", periods=n, freq="h",
                                                    tz="UTC")})


def test_default_cutoff_is_the_85_percent_quantile_and_folds_roll() -> None:
    ev = events()
    (start, end), = cutoffs(ev)
    assert start == ev[C.TIMESTAMP].iloc[850] and end is None
    folds = cutoffs(ev, folds=3)
    assert [s for s, _ in folds] == [ev[C.TIMESTAMP].iloc[i] for i in (550, 700, 850)]
    assert [e for _, e in folds] == [folds[1][0], folds[2][0], None]
    given = pd.Timestamp("2024-01-20", tz="UTC")
    assert cutoffs(ev, given)[0][0] == given
    with pytest.raises(DataError, match="outside the data"):
        cutoffs(ev, pd.Timestamp("2030-01-01", tz="UTC"))
    with pytest.raises(DataError, match="too little to train"):
        cutoffs(ev, folds=7)


def test_fold_fits_before_the_cutoff_only(tiny_folds: list) -> None:
    fold = tiny_folds[0]
    assert fold.rec.report.data.spans["history"].end <= fold.start
    assert set(fold.results) == {"for_you", "buy_again", "discover"}
    for by_model in fold.results.values():
        assert set(by_model) == {"hybrid", *DEFAULT_BASELINES}


def test_the_hybrid_beats_each_of_its_own_sources(tiny_folds: list) -> None:
    """On what shoppers bought after the cutoff, the ranked hybrid beats every single-source
    pipeline it is built from (and the fallback baseline)."""
    _, results = pooled(tiny_folds)
    means = {name: r.means()["ndcg@10"] for name, r in results["for_you"].items()}
    for name, value in means.items():
        if name != "hybrid":
            assert means["hybrid"] > value, means


def test_verdict_names_the_best_and_the_lift_interval(tiny_folds: list) -> None:
    _, results = pooled(tiny_folds)
    v = verdict(results, 10, n_resamples=300)
    fy = v["surfaces"]["for_you"]
    means = {name: r.means()["ndcg@10"] for name, r in results["for_you"].items()}
    assert fy["best"] == max(means, key=means.get)
    assert fy["best_baseline"] == max((n for n in means if n != "hybrid"), key=means.get)
    lift = fy["lifts"]["ndcg@10"]
    assert lift["low"] <= lift["lift"] <= lift["high"]
    assert lift["lift"] == pytest.approx(means["hybrid"] / means[fy["best_baseline"]] - 1)
    assert fy["best_baseline"] in v["sentence"] and "NDCG@10" in v["sentence"]


def test_paired_lift_interval_covers_a_known_ratio() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    lift = paired_lift(base * 1.1, base, n_resamples=500)
    assert lift.estimate == pytest.approx(0.1) and lift.low == pytest.approx(0.1)
    noisy = paired_lift(base + rng.normal(0, 0.3, 2000), base, n_resamples=500)
    assert noisy.low < noisy.estimate < noisy.high and noisy.low < 0 < noisy.high


def test_a_bundle_scored_as_it_is_knows_the_items_launched_after_its_data(
        tiny_shop, tiny_bundle) -> None:  # noqa: ANN001 - fixtures of tests/conftest.py
    """Items the bundle never saw are added to its catalog (as serving adds them), so their
    purchases count in its window, as in a side fitted on the same data."""
    from evaluation.backtest import score_bundle
    from recsys.data.validate import Dataset, load_dataset

    data = load_dataset(tiny_shop)
    end = data.events[C.TIMESTAMP].max()
    users = data.events[C.USER_ID].astype(str).unique()[:5]
    launched = pd.DataFrame({C.ITEM_ID: ["new-1"], C.TITLE: ["Solar lantern"],
                             C.CATEGORY: ["outdoor-lights"], C.PRICE: [19.0]})
    bought = pd.DataFrame({C.USER_ID: users, C.ITEM_ID: "new-1",
                           C.TIMESTAMP: end + pd.Timedelta(days=1), C.EVENT_TYPE: C.PURCHASE,
                           C.QUANTITY: 1})
    items = pd.concat([data.items, launched], ignore_index=True)
    events = pd.concat([data.events, bought], ignore_index=True)
    for column in (C.USER_ID, C.ITEM_ID):
        events[column] = events[column].astype(str)
    dataset = Dataset(events, items, data.report)
    fold = score_bundle(tiny_bundle, dataset, end + pd.Timedelta(hours=1), None, ("hybrid",),
                        (10,))
    assert sorted(map(str, fold.window.users)) == sorted(users)
    new = int(fold.rec.items.to_internal(["new-1"])[0])
    assert all(new in r for r in fold.window.relevant)
