"""Business rules on a hand-made catalog: eligibility before ranking, diversity after."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.catalog import Catalog
from recsys.rules import Filters, RulesConfig, category_cap, eligible_mask, mmr

NOW = int(pd.Timestamp("2024-06-01T00:00:00Z").timestamp())
NO_FILTERS = Filters()


def catalog() -> Catalog:
    return Catalog(pd.DataFrame({
        C.ITEM_ID: ["a", "b", "c", "d", "e"], C.TITLE: list("ABCDE"),
        C.CATEGORY: ["food", "food", "toys", "toys", "books"],
        C.PRICE: [1.0, 5.0, 10.0, 20.0, 50.0],
        C.IN_STOCK: [True, True, False, True, True],
        C.FIRST_SEEN: pd.to_datetime(["2024-01-01", None, None, "2024-07-01", None], utc=True),
    }))


def mask(config: RulesConfig, *, purchased: tuple[int, ...] = (), filters: Filters = NO_FILTERS,
         exclude: tuple[int, ...] = (), now: int | None = NOW) -> list[int]:
    m = eligible_mask(catalog(), config, now=now, purchased=np.array(purchased, np.int64),
                      filters=filters, exclude_ids=np.array(exclude, np.int64))
    return np.flatnonzero(m).tolist()


def test_stock_and_launch_date() -> None:
    assert mask(RulesConfig()) == [0, 1, 4]                 # c out of stock, d not launched yet
    assert mask(RulesConfig(), now=None) == [0, 1, 3, 4]   # no clock: launch dates unknown
    assert mask(RulesConfig(exclude_out_of_stock=False)) == [0, 1, 2, 4]


def test_purchased_items_and_repeat_categories() -> None:
    # off by default: whether to re-offer is learned; a shop may turn the rule on
    assert mask(RulesConfig(), purchased=(0, 4)) == [0, 1, 4]
    never = RulesConfig(exclude_purchased=True)
    assert mask(never, purchased=(0, 4)) == [1]
    assert mask(never.model_copy(update={"repeat_categories": ("food",)}),
                purchased=(0, 4)) == [0, 1]
    assert mask(never.model_copy(update={"repeat_categories": ("*",)}),
                purchased=(0, 4)) == [0, 1, 4]


def test_request_filters_and_exclusions() -> None:
    assert mask(RulesConfig(), filters=Filters(categories=("food", "books"))) == [0, 1, 4]
    assert mask(RulesConfig(), filters=Filters(categories=("nope",))) == []
    assert mask(RulesConfig(), filters=Filters(price_min=2, price_max=49)) == [1]
    assert mask(RulesConfig(), exclude=(1,)) == [0, 4]


def test_mmr_trades_relevance_for_diversity() -> None:
    # items 0 and 1 point the same way, 2 elsewhere; 1 is slightly less relevant than 0
    vectors = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]], np.float32)
    candidates, scores = np.arange(3), np.array([1.0, 0.95, 0.5])
    assert mmr(candidates, scores, vectors, 2, lam=1.0).tolist() == [0, 1]   # pure relevance
    assert mmr(candidates, scores, vectors, 2, lam=0.5).tolist() == [0, 2]   # diversity wins


def test_category_cap_fills_from_the_skipped_when_short() -> None:
    codes = np.array([0, 0, 0, 1])
    assert category_cap(np.arange(4), codes, cap=1, k=2).tolist() == [0, 3]
    assert category_cap(np.arange(4), codes, cap=1, k=3).tolist() == [0, 3, 1]
