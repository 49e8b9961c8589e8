"""The hybrid recommender end to end on a tiny synthetic shop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.data.validate import load_dataset
from recsys.errors import DataError
from recsys.history import HistoryIndex
from recsys.recommender import HybridRecommender, Request
from recsys.rules import Filters


@pytest.fixture(scope="module")
def rec(tiny_bundle: Path) -> HybridRecommender:
    return HybridRecommender.load(tiny_bundle)


def known_user(rec: HybridRecommender) -> str:
    return str(rec.users.external_ids[0])


def test_every_item_has_a_reason_and_scores_descend(rec: HybridRecommender) -> None:
    for user in [known_user(rec), "someone-new", None]:
        response = rec.recommend(Request(user_id=user, k=10))
        assert len(response.items) == 10
        assert all(item.reasons for item in response.items)
        scores = [item.score for item in response.items]
        assert scores == sorted(scores, reverse=True)
        assert [item.rank for item in response.items] == list(range(1, 11))
        assert response.fallback == (user != known_user(rec))


def test_cart_reason_names_the_cart_item(rec: HybridRecommender) -> None:
    popularity = rec.parts.popularity.item_popularity("all_time")
    cart_item = str(rec.items.external_ids[int(np.argmax(popularity))])
    response = rec.recommend(Request(user_id="anon", cart=(cart_item,), k=10))
    assert cart_item not in [i.item_id for i in response.items]   # never recommend the cart
    named = [i for i in response.items if any(f"({cart_item})" in r for r in i.reasons)]
    assert named, [i.reasons for i in response.items]
    assert any("in your cart" in r for i in named for r in i.reasons)


def test_filters_and_rules_hold(rec: HybridRecommender) -> None:
    cats = rec.catalog.categories
    wanted = str(cats[0])
    prices = rec.catalog.price
    lo, hi = float(np.quantile(prices, 0.2)), float(np.quantile(prices, 0.8))
    exclude = tuple(rec.items.external_ids[:50])
    user = known_user(rec)
    response = rec.recommend(Request(user_id=user, k=20, filters=Filters(
        categories=(wanted,), price_min=lo, price_max=hi, exclude_items=exclude)))
    ids = rec.items.to_internal([i.item_id for i in response.items])
    assert len(ids) > 0
    assert all(cats[rec.catalog.category_codes[i]] == wanted for i in ids)
    assert all(lo <= prices[i] <= hi for i in ids)
    assert not set(exclude) & {i.item_id for i in response.items}
    assert rec.catalog.in_stock[ids].all()
    bought = set(rec.history.slice(user).purchased().tolist())
    discover = rec.recommend(Request(user_id=user, k=20, surface="discover"))
    again = rec.recommend(Request(user_id=user, k=20, surface="buy_again"))
    assert not bought & set(rec.items.to_internal([i.item_id for i in discover.items]).tolist())
    assert set(rec.items.to_internal([i.item_id for i in again.items]).tolist()) <= bought
    with pytest.raises(DataError, match="unknown surface 'elsewhere'"):
        rec.recommend(Request(user_id=user, surface="elsewhere"))


def test_unknown_context_items_are_warned_not_fatal(rec: HybridRecommender) -> None:
    response = rec.recommend(Request(user_id="x", cart=("no-such-item",), k=3))
    assert len(response.items) == 3
    assert any("no-such-item" in w for w in response.warnings)
    with pytest.raises(DataError, match="k = 0"):
        rec.recommend(Request(k=0))


def test_similar_items(rec: HybridRecommender) -> None:
    item = str(rec.items.external_ids[5])
    similar = rec.similar_items(item, k=5)
    assert len(similar) == 5 and item not in [s.item_id for s in similar]
    with pytest.raises(DataError, match="unknown item_id"):
        rec.similar_items("nope")


def test_point_in_time_history(tiny_shop: Path, rec: HybridRecommender) -> None:
    """A feature for a label at time t uses no event at or after t: features computed from the
    full history sliced at t equal features computed from a history that never had the later
    events."""
    events = load_dataset(tiny_shop).events
    user = str(events["user_id"].value_counts().index[0])
    mine = events[events["user_id"].astype(str) == user].sort_values("timestamp")
    t = mine["timestamp"].iloc[len(mine) // 2]
    t_sec = int(t.timestamp())
    full = HistoryIndex.from_events(events, rec.items)
    cut = HistoryIndex.from_events(events[events["timestamp"] < t], rec.items)
    sliced = full.slice(user, before=t_sec)
    assert (sliced.times < t_sec).all() and len(sliced) == len(cut.slice(user))
    request = Request(user_id=user, timestamp=t, k=10)
    a = rec.prepare(request, history=sliced)
    b = rec.prepare(request, history=cut.slice(user))
    np.testing.assert_array_equal(a.pool.ids, b.pool.ids)
    np.testing.assert_array_equal(a.features, b.features)


def test_ivf_on_real_vectors_matches_exact(rec: HybridRecommender) -> None:
    """IVF (forced, the tiny catalog would be exact) over the trained ALS item factors, tuned
    on half the real user vectors, reaches the target recall on the other half."""
    from recsys.retrieval import ItemIndex, RetrievalConfig, score_recall

    space = rec.parts.spaces["cf"]
    users = space.model.user_factors_  # type: ignore[attr-defined]
    tune, held_out = users[::2], users[1::2]
    config = RetrievalConfig(exact_max_items=0, candidate_depth=50, max_probe_share=1.0)
    index = ItemIndex.build(space.vectors, config, tune)
    assert index.build_info_["kind"] == "ivf"
    assert index.build_info_["measured_recall"] >= config.target_recall
    got_ids, _ = index.search(held_out, 50)
    got = np.take_along_axis(held_out @ space.vectors.T, got_ids, axis=1)
    truth = -np.sort(-(held_out @ space.vectors.T), axis=1)[:, :50]
    assert score_recall(got, truth) >= 0.9


def test_history_without_user_leaves_the_original_untouched(rec: HybridRecommender) -> None:
    history = rec.history
    lengths = np.diff(history.offsets)
    user = str(history.users.external_ids[int(np.argmax(lengths))])
    other = str(history.users.external_ids[int(np.argmin(lengths))])
    before_other = history.slice(other)
    erased = history.without_user(user)
    assert len(erased.slice(user)) == 0 and len(history.slice(user)) == lengths.max()
    np.testing.assert_array_equal(erased.slice(other).items, before_other.items)
    assert len(erased.items) == len(history.items) - lengths.max()
    assert history.without_user("nobody") is history
