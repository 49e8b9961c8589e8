"""Spark and pandas preparation agree on a synthetic shop of about a million events.

The shop's events get dirt the validation must drop (exact duplicates, future timestamps,
unknown items) and are shuffled, so file order (which row is "first") differs from time order;
the aggregates use a train-like window, a half-life and baskets short enough to be truncated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.data.aggregates import cooccurrence_counts
from recsys.data.interactions import InteractionConfig
from recsys.data.io import write_dataset
from recsys.data.prepare import PrepareConfig, prepare
from recsys.data.synthetic import ShopConfig, generate_shop
from recsys.data.validate import load_dataset
from tests.data.test_spark_prep import assert_same

NOW = pd.Timestamp("2027-01-01", tz="UTC")


@pytest.fixture(scope="module")
def dirty_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shop = generate_shop(ShopConfig.for_target_events(1_000_000, seed=11))
    events = shop.events
    rng = np.random.default_rng(0)
    dup = events.iloc[rng.choice(len(events), 700, replace=False)]
    future = events.iloc[rng.choice(len(events), 300, replace=False)].copy()
    future[C.TIMESTAMP] = future[C.TIMESTAMP] + pd.Timedelta(days=800)
    ghost = events.iloc[rng.choice(len(events), 200, replace=False)].copy()
    ghost[C.ITEM_ID] = [f"ghost{i % 17}" for i in range(len(ghost))]
    frame = pd.concat([events.astype({C.ITEM_ID: str}), dup.astype({C.ITEM_ID: str}),
                       future.astype({C.ITEM_ID: str}), ghost.astype({C.ITEM_ID: str})],
                      ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    # categoricals again, as the synthetic shop writes them (Parquet dictionaries)
    frame = frame.astype({C.ITEM_ID: "category", C.USER_ID: str}).astype(
        {C.USER_ID: "category"})
    return write_dataset(tmp_path_factory.mktemp("dirty1m"), frame, shop.items)


def test_spark_matches_pandas_on_a_million_events(dirty_shop: Path,
                                                  spark_settings: object) -> None:
    events = pd.read_parquet(dirty_shop / "events.parquet", columns=[C.TIMESTAMP])
    assert len(events) > 900_000
    end = events[C.TIMESTAMP].quantile(0.85)
    config = PrepareConfig(interactions=InteractionConfig(half_life_days=30), max_basket=3,
                           basket_event_types=(C.CLICK, C.ADD_TO_CART, C.PURCHASE))
    a = prepare(dirty_shop, config, engine="pandas", now=NOW, end=end)
    b = prepare(dirty_shop, config, engine="spark", now=NOW, end=end,
                spark=spark_settings)  # type: ignore[arg-type]
    assert_same(a, b)
    # the dirt was found, and the aggregates are not trivially empty
    assert b.report.dropped["exact duplicate event"] >= 700
    assert b.report.dropped["item_id not in the catalog"] == 200
    assert len(b.report.dropped) == 3
    assert b.matrix.nnz > 100_000 and b.cooccurrence.pairs.nnz > 10_000
    assert (b.cooccurrence.baskets > 0).sum() > 100 and b.buyers.sum() > 1000
    # max_basket = 3 did truncate baskets: without it they hold more items
    window = load_dataset(dirty_shop, now=NOW).events
    whole = cooccurrence_counts(window[window[C.TIMESTAMP] < end], a.item_map,
                                config.basket_event_types, max_basket=1000)
    assert whole.baskets.sum() > b.cooccurrence.baskets.sum()
    print(f"seconds: pandas {a.seconds}, spark {b.seconds}")
