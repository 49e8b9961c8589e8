"""Each candidate source on the hand-made shop of :mod:`tests.world`, where answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.config import DEFAULT_SOURCES, HybridConfig
from recsys.context import Request
from recsys.sources import build_sources, pipeline_names, register, registered
from recsys.sources.base import Source
from tests.world import NOW, World


def sources(world: World, *names: str) -> dict[str, Source]:
    config = HybridConfig()
    built = build_sources(names, config.sources, world.parts)
    for source in built.values():
        source.fit(world.training)
    return built


def ext(world: World, ids: np.ndarray) -> list[str]:
    return [str(x) for x in world.catalog.items.to_external(ids)]


def test_registry_has_every_default_source_and_one_pipeline_each() -> None:
    registry = registered()
    assert set(DEFAULT_SOURCES) <= set(registry)
    names = pipeline_names()
    assert len(names) == len(set(names))
    assert {"hybrid", "popularity", "als", "content", "buy_again", "buy_again_pop", "ppop",
            "tifu", "itemknn"} <= set(names)


def test_two_sources_with_one_name_are_refused() -> None:
    cf = registered()["cf"]

    class Impostor(cf):  # type: ignore[misc,valid-type]
        name = "cf"

    with pytest.raises(ValueError, match="two candidate sources are named 'cf'"):
        register(Impostor)


def test_repeat_ranks_by_recency_weighted_baskets(world: World) -> None:
    source = sources(world, "repeat")["repeat"]
    q = world.query(world.context("u1"))
    res = source.propose(q, 5)
    # k0: baskets 29, 20 and 10 days ago; k1: one, 5 days ago (half-life 90 days); g0 was
    # only viewed, so it is not a repeat candidate
    assert ext(world, res.ids) == ["k0", "k1"]
    expected = sum(0.5 ** (age / 90) for age in (29, 20, 10))
    assert res.scores[0] == pytest.approx(expected, rel=1e-5)
    assert source.reason(int(res.ids[0]), -1, q) == "you bought it before (3x)"
    assert source.reason(int(res.ids[1]), -1, q) == "you bought it before"
    # without a clock: plain basket counts; a masked item is never proposed
    mask = np.ones(len(world.catalog), bool)
    mask[world.ids("k0")] = False
    res = source.propose(world.query(world.context("u1", now=None), mask), 5)
    assert ext(world, res.ids) == ["k1"] and res.scores[0] == 1


def test_repeat_candidates_always_enter_the_pool(world: World) -> None:
    """However many other candidates there are, every bought item reaches the ranker."""
    config = HybridConfig.model_validate({"candidates": 2})
    rec = world.hybrid(config)
    prep = rec.prepare(Request(user_id="u2", timestamp=NOW))
    bought = set(world.ids("k0", "k1", "k2", "g0", "g1").tolist())
    assert bought <= set(prep.pool.ids.tolist())
    assert len(prep.pool) <= len(bought) + 2


def test_ppop_is_personal_frequency_then_recent_popularity(world: World) -> None:
    source = sources(world, "ppop")["ppop"]
    res = source.propose(world.query(world.context("u1")), 4)
    # u1's own items first (k0 in 3 baskets over k1 in 1), then the recently popular fill
    assert ext(world, res.ids)[:2] == ["k0", "k1"]
    assert res.scores[0] > 1 > res.scores[2]          # normalised own frequency + a little pop
    anonymous = source.propose(world.query(world.context(None)), 3)
    share = world.parts.popularity.item_popularity("recent")
    assert ext(world, anonymous.ids) == ext(world, np.argsort(-share, kind="stable")[:3])


def test_tifu_blends_own_and_neighbour_frequencies(world: World) -> None:
    source = sources(world, "tifu")["tifu"]
    own = source.propose(world.query(world.context("u4")), 5)   # u4 bought k0 and g0 once
    assert set(ext(world, own.ids)) >= {"k0", "g0"}
    # neighbours of u3 (garden viewer, no purchase) give nothing; u2's neighbours buy k0/g0
    u2 = source.propose(world.query(world.context("u2")), 8)
    assert {"k0", "g0"} <= set(ext(world, u2.ids))


def test_tifu_neighbours_match_a_brute_force_cosine_knn() -> None:
    import scipy.sparse as sp

    from recsys.sources.tifu import neighbour_items

    rng = np.random.default_rng(3)
    u = sp.random(60, 40, density=0.15, random_state=rng, format="csr") * 3
    u = sp.vstack([u, sp.csr_matrix((2, 40))]).tocsr()        # two shoppers without purchases
    k, keep = 5, 7
    got = neighbour_items(u, k, keep).toarray()
    dense = u.toarray()
    norms = np.linalg.norm(dense, axis=1)
    active = np.flatnonzero(norms > 0)
    unit = dense[active] / norms[active, None]
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    for row, user in enumerate(active):
        nearest = np.argsort(-sim[row])[:k]
        mean = dense[active[nearest]].sum(axis=0) / k
        top = np.argsort(-mean)[:keep]
        top = top[mean[top] > 0]
        np.testing.assert_allclose(got[user, top], mean[top], rtol=1e-5)
        assert np.count_nonzero(got[user]) == len(top)
    assert not got[60:].any()


def test_basket_weights_follow_the_paper() -> None:
    from recsys.sources.tifu import basket_weights

    # 3 baskets, 7 groups allowed: each basket is its own group, decayed across groups only
    w = basket_weights(np.arange(3), np.full(3, 3), 7, 0.9, 0.7)
    np.testing.assert_allclose(w, [0.7 ** 2 / 3, 0.7 / 3, 1 / 3])
    # 4 baskets in 2 groups of 2: within-group and across-group decay, averaged
    w = basket_weights(np.arange(4), np.full(4, 4), 2, 0.5, 0.25)
    np.testing.assert_allclose(w, [0.5 * 0.25 / 4, 0.25 / 4, 0.5 / 4, 1 / 4])


def test_itemknn_follows_shared_buyers(world: World) -> None:
    source = sources(world, "itemknn")["itemknn"]
    q = world.query(world.context(None, cart=("k2",)))
    res = source.propose(q, 5)
    # k2's only buyer (u2) also bought k0, k1, g0, g1
    assert {"k0", "k1"} <= set(ext(world, res.ids))
    named = [source.reason(int(i), int(v), q) for i, v in zip(res.ids, res.via, strict=True)
             if v != i]
    assert "shoppers who bought 'wooden spoon' (k2) also bought it" in named


def test_copurchase_proposes_basket_mates_of_the_cart_and_names_them(world: World) -> None:
    source = sources(world, "copurchase")["copurchase"]
    q = world.query(world.context(None, cart=("k2",)))
    res = source.propose(q, 5)
    assert set(ext(world, res.ids)) == {"k0", "k1"}        # k2 was only bought in basket b5
    assert set(ext(world, res.via)) == {"k2"}
    reason = source.reason(int(res.ids[0]), int(res.via[0]), q)
    assert reason == "bought together with 'wooden spoon' (k2) (in your cart)"
    # no context: the user's latest purchases seed it (u1 bought k0 and k1)
    res = source.propose(world.query(world.context("u1")), 5)
    assert "k2" in ext(world, res.ids)


def test_copurchase_state_round_trips(world: World, tmp_path: Path) -> None:
    source = sources(world, "copurchase")["copurchase"]
    files = source.save(tmp_path)
    assert sorted(files) == ["copurchase.json", "copurchase.npz"]
    again = sources(world, "copurchase")["copurchase"].load_state(tmp_path)
    q = world.query(world.context(None, cart=("k0", "g0")))
    a, b = source.propose(q, 10), again.propose(q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_popular_trending_and_popular_in_category(world: World) -> None:
    built = sources(world, "popular", "trending", "popular_cat")
    q = world.query(world.context(None))
    # all-time weighted counts: k0 (8 purchases) > g0 (7 + a view) > k2 (50 units) > k1
    assert ext(world, built["popular"].propose(q, 4).ids) == ["k0", "g0", "k2", "k1"]
    # bought in the last 7 days before the last event: k0 (day 20) and k1 (day 25), tied on
    # trend and ordered by recent popularity; g0 was only viewed
    assert ext(world, built["trending"].propose(q, 3).ids) == ["k0", "k1", "g0"]
    # u3 viewed only garden items: garden items by popularity, purchases outweigh views
    garden = world.query(world.context("u3"))
    res = built["popular_cat"].propose(garden, 2)
    assert ext(world, res.ids) == ["g0", "g1"]
    assert built["popular_cat"].reason(int(res.ids[0]), -1, garden) == "popular in garden"
    assert len(built["popular_cat"].propose(q, 5)) == 0      # no history, no session: nothing


def test_retrieval_sources_return_the_exact_top_of_their_space(world: World) -> None:
    built = sources(world, "cf", "content")
    mask = np.ones(len(world.catalog), bool)
    mask[world.ids("k0")] = False
    q = world.query(world.context("u2"), mask)
    for name, space in (("cf", "cf"), ("content", "content")):
        s = world.parts.spaces[space]
        vector = s.user_query(q)
        assert vector is not None
        scores = np.where(mask, s.vectors @ vector, -np.inf)
        res = built[name].propose(q, 3)
        np.testing.assert_allclose(np.sort(res.scores)[::-1], np.sort(scores)[::-1][:3],
                                   rtol=1e-5)
        assert "k0" not in ext(world, res.ids)
    assert len(built["cf"].propose(world.query(world.context(None)), 3)) == 0  # no profile


def test_similar_items_name_the_context_item_they_came_from(world: World) -> None:
    source = sources(world, "i2i_content")["i2i_content"]
    mask = np.ones(len(world.catalog), bool)
    mask[world.ids("k0")] = False                  # the cart is never recommended
    q = world.query(world.context(None, cart=("k0",)), mask)
    res = source.propose(q, 4)
    assert len(res) == 4 and "k0" not in ext(world, res.ids)
    assert set(ext(world, res.via)) == {"k0"}
    assert source.reason(int(res.ids[0]), int(res.via[0]), q) == \
        "similar to 'steel pan' (k0) (in your cart)"
    assert len(source.propose(world.query(world.context("u1")), 4)) == 0   # no context items


def test_disabled_source_leaves_the_pool_features_and_pipelines() -> None:
    config = HybridConfig.model_validate({"sources": {"trending": {"enabled": False},
                                                      "cf": {"depth": 7}}})
    assert "trending" not in config.enabled_sources and config.sources["cf"].depth == 7
    assert config.sources["content"].depth == 60            # untouched sources keep defaults
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['trendy'\]"):
        HybridConfig.model_validate({"sources": {"trendy": {}}})
    with pytest.raises(ValueError, match="recent_mix"):
        HybridConfig.model_validate({"sources": {"trending": {"recent_mix": -1}}})


def test_now_is_used_for_recency(world: World) -> None:
    """The same purchases, asked later: older purchases weigh less (repeat's half-life)."""
    source = sources(world, "repeat")["repeat"]
    early = source.propose(world.query(world.context("u1")), 2).scores
    later = NOW + pd.Timedelta(days=60)
    late = source.propose(world.query(world.context("u1", now=later)), 2).scores
    assert (late < early).all()
