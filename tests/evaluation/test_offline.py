"""Offline evaluation through the serving code path, on the tiny shop's backtest fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.beyond import popularity_share
from evaluation.offline import (
    EvalWindow,
    evaluate_pipelines,
    history_popularity,
    make_window,
    per_user_metrics,
    recommend_at,
    recommend_lists,
    score_lists,
    subset_window,
)
from recsys.recommender import HybridRecommender

KS = (5, 10)


@pytest.fixture(scope="module")
def setup(tiny_folds: list) -> tuple[HybridRecommender, EvalWindow]:
    return tiny_folds[0].rec, tiny_folds[0].window


@pytest.fixture(scope="module")
def results(setup: tuple[HybridRecommender, EvalWindow]) -> dict:
    rec, window = setup
    return evaluate_pipelines(rec, window, ("hybrid", "als"), KS)


def test_every_metric_has_one_value_per_user(setup, results) -> None:
    _, window = setup
    assert set(results) == {"hybrid", "als"}   # popularity ran for serendipity, not returned
    for r in results.values():
        for k in KS:
            assert r.lists[k].shape == (len(window.users), k)
            for name in ("ndcg", "new_recall", "revenue_per_rec", "novelty", "serendipity",
                         "ild_embedding", "orders"):
                assert len(r.per_user[f"{name}@{k}"]) == len(window.users)
            assert 0 < r.catalog[f"coverage@{k}"] <= 1
        means = r.means()
        assert "orders@10" not in means and "coverage@10" in means


def test_smaller_k_lists_are_prefixes_of_the_served_lists(setup) -> None:
    rec, window = setup
    small = subset_window(window, np.arange(min(20, len(window.users))))
    lists = recommend_at(rec, small, (5, 10))
    np.testing.assert_array_equal(lists[5], recommend_lists(rec, small, 5))
    np.testing.assert_array_equal(lists[10][:, :5], lists[5])


def test_means_agree_with_score_lists(setup, results) -> None:
    _, window = setup
    means = results["hybrid"].means()
    old = score_lists(results["hybrid"].lists[10], window, (10,))
    for name, value in old.items():
        if name.startswith("aov@"):   # score_lists averages per user; means() pools
            continue
        assert means[name] == pytest.approx(value, nan_ok=True), name


def test_aov_is_pooled(results) -> None:
    r = results["hybrid"]
    revenue, orders = r.per_user["revenue_per_user@10"], r.per_user["orders@10"]
    expected = revenue.sum() / orders.sum() if orders.sum() else float("nan")
    assert r.means()["aov@10"] == pytest.approx(expected, nan_ok=True)


def test_subset_window_matches_the_subset_of_per_user_values(setup, results) -> None:
    _, window = setup
    rows = np.arange(0, len(window.users), 2)
    sub = subset_window(window, rows)
    recs = results["hybrid"].lists[10][rows]
    full = {n: v for n, v in results["hybrid"].per_user.items() if n.endswith("@10")}
    part = per_user_metrics(recs, sub, 10)
    for name, values in part.items():
        np.testing.assert_allclose(values, full[name][rows], equal_nan=True, err_msg=name)


def test_history_popularity_is_the_user_based_share(setup) -> None:
    rec, window = setup
    hist = rec.history
    users = np.repeat(np.arange(len(hist.offsets) - 1), np.diff(hist.offsets))
    keep = hist.times < int(window.start.timestamp())
    expected = popularity_share(hist.items[keep], len(rec.items), users[keep])
    np.testing.assert_allclose(history_popularity(rec, window.start), expected)


def test_the_window_is_shoppers_with_history_who_bought(setup, tiny_folds: list) -> None:
    rec, window = setup
    before = int(window.start.timestamp())
    assert all(len(rec.history.slice(u, before=before)) > 0 for u in window.users)
    assert window.returning.all()
    # the three targets partition what was bought: re-purchases and new items
    for full, new, repeat in zip(window.relevant, window.relevant_new, window.relevant_repeat,
                                 strict=True):
        assert sorted([*new.tolist(), *repeat.tolist()]) == sorted(full.tolist())
    assert any(len(r) for r in window.relevant_repeat) and any(len(n) for n in
                                                               window.relevant_new)


def test_surface_lists_hold_only_their_items(setup) -> None:
    rec, window = setup
    small = subset_window(window, np.arange(min(30, len(window.users))))
    before = int(window.start.timestamp())
    again = recommend_lists(rec, small, 10, surface="buy_again")
    new = recommend_lists(rec, small, 10, surface="discover")
    for row, user in enumerate(small.users):
        bought = set(rec.history.slice(user, before=before).purchased().tolist())
        assert set(again[row][again[row] >= 0].tolist()) <= bought
        assert not set(new[row][new[row] >= 0].tolist()) & bought


def test_empty_window_is_a_clear_error(setup) -> None:
    rec, window = setup
    frame = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                          "event_type": pd.Series(dtype=str), "price": pd.Series(dtype=float),
                          "quantity": pd.Series(dtype=int)})
    assert len(make_window(rec, frame, start=window.start).users) == 0
