"""Popularity: the shared contract on the ladder fixture, plus mode-specific behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import columns as C
from recsys.configfile import parse_config
from recsys.errors import ConfigError, DataError
from recsys.models.base import Model
from recsys.models.popularity import PopularityConfig, PopularityModel
from tests.models.conftest import NOW, ContractCase, build_training, popularity_ladder
from tests.models.contract import ModelContract


class TestAllTime(ModelContract):
    def make_model(self) -> Model:
        return PopularityModel()

    def make_case(self) -> ContractCase:
        return popularity_ladder()


class TestRecent(TestAllTime):
    def make_model(self) -> Model:
        return PopularityModel(PopularityConfig(mode="recent"))


class TestCategory(TestAllTime):
    def make_model(self) -> Model:
        return PopularityModel(PopularityConfig(mode="category", top_categories=1))


def _shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    """'old' (cat a) was bought by 6 users 60 days ago; 'new' (cat a) by 3 users this week;
    'shoe' (cat b) by 2 users; 'cold' (cat b) never."""
    rows = [(f"u{u}", "old", NOW - pd.Timedelta(days=60)) for u in range(6)]
    rows += [(f"u{u}", "new", NOW - pd.Timedelta(days=1, hours=u)) for u in range(3)]
    rows += [(f"u{u}", "shoe", NOW - pd.Timedelta(days=10)) for u in (7, 8)]
    events = pd.DataFrame({C.USER_ID: [r[0] for r in rows], C.ITEM_ID: [r[1] for r in rows],
                           C.TIMESTAMP: [r[2] for r in rows], C.EVENT_TYPE: C.PURCHASE})
    items = pd.DataFrame({C.ITEM_ID: ["old", "new", "shoe", "cold"],
                          C.TITLE: ["Old mug", "New mug", "Red shoe", "Blue shoe"],
                          C.CATEGORY: ["a", "a", "b", "b"], C.PRICE: 1.0})
    return events, items


@pytest.fixture
def shop():
    return build_training(*_shop())


def _ids(data, names):
    return data.items.to_internal(names)


def test_all_time_vs_recent(shop) -> None:
    old, new = _ids(shop, ["old", "new"])
    user = sp.csr_matrix((1, len(shop.items)), dtype=np.float32)
    top_all, _ = PopularityModel().fit(shop).recommend(-1, user, k=1)
    top_recent, _ = PopularityModel(PopularityConfig(mode="recent")).fit(shop).recommend(
        -1, user, k=1)
    assert top_all[0] == old and top_recent[0] == new


def test_item_popularity_arrays(shop) -> None:
    model = PopularityModel().fit(shop)
    old, new, shoe, cold = _ids(shop, ["old", "new", "shoe", "cold"])
    all_time = model.item_popularity("all_time")
    assert all_time.dtype == np.float32 and all_time.shape == (4,)
    assert all_time[old] == pytest.approx(2 * all_time[new]) and all_time[cold] == 0
    share = model.item_popularity("category_share")
    assert share[old] + share[new] == pytest.approx(1.0)
    assert share[shoe] == pytest.approx(1.0) and share[cold] == 0
    trend = model.item_popularity("trend")
    assert trend[new] > 0 and trend[old] == 0 and trend[shoe] < 0  # shoe: 10 days = prev window
    recent = model.item_popularity("recent")
    assert recent[new] > recent[old]
    with pytest.raises(DataError, match="popularity kind"):
        model.item_popularity("weekly")  # type: ignore[arg-type]


def test_category_mode_follows_history(shop) -> None:
    old, shoe, cold = _ids(shop, ["old", "shoe", "cold"])
    model = PopularityModel(PopularityConfig(mode="category")).fit(shop)
    # a user whose history is in category b gets b's popular item before the overall top
    b_fan = sp.csr_matrix(([1.0], ([0], [cold])), shape=(1, 4), dtype=np.float32)
    ids, _ = model.recommend(-1, b_fan, k=2)
    assert ids.tolist() == [shoe, old]
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    np.testing.assert_array_equal(model.recommend(-1, empty, k=4)[0],
                                  PopularityModel().fit(shop).recommend(-1, empty, k=4)[0])


def test_similar_items_same_category(shop) -> None:
    old, new, shoe, cold = _ids(shop, ["old", "new", "shoe", "cold"])
    ids, scores = PopularityModel().fit(shop).similar_items(int(new), k=3)
    assert ids[0] == old and (ids[1:] == -1).all() and np.isneginf(scores[1:]).all()
    with pytest.raises(DataError, match="out of range"):
        PopularityModel().fit(shop).similar_items(99)


def test_user_items_column_mismatch(shop) -> None:
    with pytest.raises(DataError, match="columns"):
        PopularityModel().fit(shop).score(np.array([0]), sp.csr_matrix((1, 3)))


def test_config_rejects_unknown_and_conflicting_keys() -> None:
    with pytest.raises(ConfigError, match="unknown key 'halflife'"):
        parse_config(PopularityConfig, {"halflife": 3})
    with pytest.raises(ConfigError, match="half_life_days"):
        PopularityConfig.model_validate({"interactions": {"half_life_days": 3}})
