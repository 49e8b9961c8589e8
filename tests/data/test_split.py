from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.split import SplitConfig, summarize, time_split
from recsys.data.validate import validate_events
from recsys.errors import ConfigError, DataError


def make_events(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 90 * 86400, n),
                                                                  unit="s")
    raw = pd.DataFrame({"user_id": rng.integers(0, 50, n).astype(str),
                        "item_id": rng.integers(0, 30, n).astype(str),
                        "timestamp": ts,
                        "event_type": rng.choice(["view", "click", "purchase"], n)})
    return validate_events(raw)[0]


def test_order_and_proportions() -> None:
    events = make_events()
    split = time_split(events)
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
    assert len(split.train) + len(split.valid) + len(split.test) == len(events)
    assert abs(len(split.train) / len(events) - 0.70) < 0.01
    assert abs(len(split.valid) / len(events) - 0.15) < 0.01


def test_custom_shares_and_summary() -> None:
    events = make_events()
    split = time_split(events, SplitConfig(train=0.5, valid=0.25))
    assert abs(len(split.test) / len(events) - 0.25) < 0.01
    summary = summarize(split)
    test = summary["parts"]["test"]
    assert test["events"] == len(split.test)
    assert sum(test["events_by_type"].values()) == len(split.test)
    assert 0.0 <= test["cold_user_share"] <= 1.0
    assert summary["parts"]["train"]["cold_user_share"] == 0.0


def test_cold_shares_counted() -> None:
    raw = pd.DataFrame({"user_id": ["a", "a", "b", "c", "c", "d"],
                        "item_id": ["x", "y", "x", "z", "x", "w"],
                        "timestamp": pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC"),
                        "event_type": "view"})
    split = time_split(validate_events(raw)[0], SplitConfig(train=0.5, valid=0.2))
    test = summarize(split)["parts"]["test"]
    # test holds (c, x) and (d, w): c and d are unseen in train, w is a new item, x is not
    assert test["cold_user_share"] == 1.0 and test["cold_item_share"] == 0.5


def test_bad_config_and_too_little_data() -> None:
    with pytest.raises(ConfigError, match="train \\+ valid"):
        SplitConfig(train=0.9, valid=0.1)
    with pytest.raises(DataError, match="at least 3"):
        time_split(make_events(2))
