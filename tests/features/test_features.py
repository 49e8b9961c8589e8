"""Feature groups on the hand-made shop of :mod:`tests.world`: names, and values checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.features import GROUPS, FeatureGroup, FeatureInput, FeatureSet, feature_group
from recsys.pool import SourceResult, merge
from tests.world import World

SOURCES = ("cf", "repeat")


def values(world: World, ctx_args: dict, *items: str) -> dict[str, np.ndarray]:
    """Every feature of ``items`` as candidates, by name."""
    ids = world.ids(*items)
    pool = merge({"repeat": SourceResult(ids, np.arange(len(ids), 0, -1, dtype=np.float32))},
                 SOURCES, 100)
    matrix = FeatureSet(SOURCES, world.parts).build(pool, world.context(**ctx_args))
    order = np.argsort(pool.ids)[np.argsort(np.argsort(ids))]   # pool rows in `items` order
    names = FeatureSet(SOURCES, world.parts).names
    return {name: matrix[order, j] for j, name in enumerate(names)}


@pytest.mark.parametrize("ctx_args", [{"user": None, "now": None}, {"user": "u1"},
                                      {"user": "u2", "cart": ("k0",), "views": ("g0",)}])
def test_every_group_returns_exactly_its_names(world: World, ctx_args: dict) -> None:
    x = FeatureInput(world.ids("k0", "k3", "g1"), world.context(**ctx_args), world.parts)
    for group in FeatureSet(SOURCES, world.parts).groups:
        out = group.compute(x)
        assert set(out) == set(group.features), type(group).__name__
        for name, v in out.items():
            assert np.ndim(v) == 0 or np.shape(v) == (3,), name


def test_layout_sources_first_and_no_name_twice(world: World) -> None:
    names = FeatureSet(SOURCES, world.parts).names
    assert names[:5] == ("cf_score", "repeat_score", "cf_rank", "repeat_rank", "n_sources")
    assert len(names) == len(set(names))

    with pytest.raises(ValueError, match=r"feature\(s\) \['trend'\] defined twice"):
        @feature_group
        class Again(FeatureGroup):
            features = ("trend",)

            def compute(self, x: FeatureInput) -> dict:
                return {"trend": 0.0}
    assert all(g.__name__ != "Again" for g in GROUPS)


def test_source_columns_and_repeat_features(world: World) -> None:
    v = values(world, {"user": "u1"}, "k0", "k1", "k2")
    # source scores relative to the source's best in the request (scale-free)
    np.testing.assert_allclose(v["repeat_score"], [1, 2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_array_equal(v["repeat_rank"], [1, 2, 3])
    assert np.isnan(v["cf_score"]).all() and np.isnan(v["cf_rank"]).all()
    np.testing.assert_array_equal(v["n_sources"], [1, 1, 1])
    # u1 bought k0 on days 1, 10, 20 and k1 on day 25 (4 baskets in all); now is day 30
    np.testing.assert_array_equal(v["times_bought"], [3, 1, 0])
    np.testing.assert_array_equal(v["baskets_bought"], [3, 1, 0])
    np.testing.assert_allclose(v["basket_share"], [3 / 4, 1 / 4, 0])
    np.testing.assert_allclose(v["days_since_bought"][:2], [10, 5])
    assert np.isnan(v["days_since_bought"][2])
    np.testing.assert_allclose(v["usual_gap_days"][0], 19 / 2)     # (20 - 1) / 2 gaps
    assert np.isnan(v["usual_gap_days"][1])                          # bought once
    np.testing.assert_allclose(v["gap_ratio"][0], 10 / 9.5)
    np.testing.assert_array_equal(v["baskets_since_bought"][:2], [1, 0])  # k1's basket after
    np.testing.assert_array_equal(v["in_recent_baskets"], [2, 1, 0])  # last 3: days 10, 20, 25
    np.testing.assert_allclose(v["freq_h30"][1], 0.5 ** (5 / 30))
    np.testing.assert_allclose(v["user_repeat_share"], 1 - 2 / 4)   # 2 items in 4 pairs
    np.testing.assert_allclose(v["user_baskets"], np.log1p(4))
    np.testing.assert_allclose(v["days_since_basket"], 5)
    np.testing.assert_array_equal(v["bought_last_season"], [0, 0, 0])
    stats = world.parts.repeat
    np.testing.assert_allclose(v["item_repeat_rate"], stats.repeat_rate[world.ids("k0", "k1",
                                                                                  "k2")])


def test_user_features(world: World) -> None:
    # u1: 5 events (k0 x3, k1 bought; g0 viewed): kitchen 4/5, garden 1/5; brand acme on 4,
    # green on 1; mean spend (3 x 10 + 20) / 4 = 12.5
    v = values(world, {"user": "u1"}, "k2", "g1", "g2", "k1")
    np.testing.assert_allclose(v["cat_affinity"], [0.8, 0.2, 0.2, 0.8])
    np.testing.assert_allclose(v["brand_affinity"], [0.0, 0.2, 0.0, 0.8])   # oak, green, -, acme
    np.testing.assert_allclose(v["price_vs_user"], [3 / 12.5, 12 / 12.5, 4 / 12.5, 20 / 12.5])
    np.testing.assert_allclose(v["user_events"], np.log1p(5))
    np.testing.assert_allclose(v["user_purchases"], np.log1p(4))
    assert (v["known_user"] == 1).all()
    anon = values(world, {"user": None}, "k2")
    assert np.isnan(anon["cat_affinity"]).all() and (anon["known_user"] == 0).all()


def test_item_and_session_features(world: World) -> None:
    v = values(world, {"user": None, "cart": ("k0",), "views": ("g0",)}, "k0", "g0", "k3")
    pop = world.parts.popularity.item_popularity("all_time")
    relative = pop * len(pop) / pop.sum()          # 1 = as popular as the average item
    np.testing.assert_allclose(v["pop_all"], np.log1p(relative[world.ids("k0", "g0", "k3")]),
                               rtol=1e-6)
    np.testing.assert_array_equal(v["is_cold"], [0, 0, 1])      # nobody touched k3
    np.testing.assert_array_equal(v["price"], [10, 15, 5])
    np.testing.assert_array_equal(v["in_cart"], [1, 0, 0])
    np.testing.assert_array_equal(v["in_session_views"], [0, 1, 0])
    np.testing.assert_allclose(v["sim_cart_max"][0], 1.0, rtol=1e-5)   # k0 against itself
    np.testing.assert_allclose(v["sim_views_max"][1], 1.0, rtol=1e-5)
    # 2024-01-31 00:00 UTC, a Wednesday; the device of tests.world's contexts is mobile
    assert (v["hour"] == 0).all() and (v["dow"] == 2).all() and (v["device"] == 1).all()
    assert np.isnan(v["item_age_days"]).all()                  # no launch dates in the catalog
    no_time = values(world, {"user": None, "now": None}, "k0")
    assert np.isnan(no_time["hour"]).all() and np.isnan(no_time["sim_cart_max"]).all()
