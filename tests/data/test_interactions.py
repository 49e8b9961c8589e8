from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.idmap import IdMap
from recsys.data.interactions import InteractionConfig, build_matrix
from recsys.data.validate import validate_events
from recsys.errors import ConfigError, DataError


def test_idmap_round_trip() -> None:
    ids = ["u9", "u1", "u5"]
    m = IdMap(ids)
    internal = m.to_internal(["u5", "u9", "u1"])
    assert internal.tolist() == [2, 0, 1]
    assert m.to_external(internal).tolist() == ["u5", "u9", "u1"]
    loaded = IdMap.from_arrays(m.to_arrays("user"), "user")
    assert loaded.external_ids.tolist() == ids
    assert m.to_internal(["u1", "nope"], missing="minus_one").tolist() == [1, -1]
    with pytest.raises(DataError, match="'nope'"):
        m.to_internal(["nope"])
    with pytest.raises(DataError, match="duplicate"):
        IdMap(["a", "a"])


def test_idmap_from_categorical_matches_strings() -> None:
    s = pd.Series(pd.Categorical(["b", "a", "b", "c"]))
    m = IdMap(["c", "b", "a"])
    assert m.to_internal(s).tolist() == m.to_internal(["b", "a", "b", "c"]).tolist()


def _events() -> pd.DataFrame:
    raw = pd.DataFrame({
        "user_id": ["a", "a", "a", "b"],
        "item_id": ["x", "x", "y", "y"],
        "timestamp": pd.to_datetime(["2024-01-01", "2024-01-11", "2024-01-11", "2024-01-11"],
                                    utc=True),
        "event_type": ["view", "purchase", "click", "add_to_cart"],
        "quantity": [1, 3, 1, 1],
    })
    return validate_events(raw)[0]


def test_weights_sum_per_pair() -> None:
    users, items = IdMap(["a", "b"]), IdMap(["x", "y"])
    m = build_matrix(_events(), users, items, InteractionConfig(use_quantity=False))
    assert m.dtype == np.float32 and m.shape == (2, 2)
    assert m.toarray().tolist() == [[1 + 8, 2], [0, 4]]
    # quantity: weight * log2(1 + q), so 3 units of a purchase count 2x one unit
    mq = build_matrix(_events(), users, items, InteractionConfig(use_quantity=True))
    assert mq[0, 0] == pytest.approx(1 + 8 * 2)


def test_half_life_decay() -> None:
    users, items = IdMap(["a", "b"]), IdMap(["x", "y"])
    cfg = InteractionConfig(use_quantity=False, half_life_days=10)
    m = build_matrix(_events(), users, items, cfg)
    # the view is 10 days older than the last event: half weight
    assert m[0, 0] == pytest.approx(0.5 * 1 + 8)
    # events of unknown users/items are skipped, not an error
    m2 = build_matrix(_events(), IdMap(["a"]), IdMap(["x"]), cfg)
    assert m2.shape == (1, 1) and m2[0, 0] == pytest.approx(8.5)


def test_bad_weights() -> None:
    with pytest.raises(ConfigError, match="buy"):
        InteractionConfig(weights={"buy": 1.0})
    with pytest.raises(ConfigError, match="negative"):
        InteractionConfig(weights={"view": -1.0})
