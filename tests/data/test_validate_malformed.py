"""Malformed tables are one-line DataErrors naming file, column, row and value, never a
traceback: the known cases one by one, then random tables (hypothesis)."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys import columns as C
from recsys.data.io import read_table
from recsys.data.validate import validate_events, validate_items
from recsys.errors import DataError

NOW = pd.Timestamp("2030-01-01", tz="UTC")
GOOD = {C.USER_ID: ["u1", "u2"], C.ITEM_ID: ["i1", "i2"],
        C.TIMESTAMP: ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"],
        C.EVENT_TYPE: ["view", "purchase"]}


@pytest.mark.parametrize(("column", "values", "problem", "value"), [
    (C.QUANTITY, ["1", "3000000000"], "value too large", "'3000000000'"),    # int32 wrap
    (C.PRICE, ["1.5", "inf"], "not a finite number", "'inf'"),
    (C.PRICE, [1.5, float("-inf")], "not a finite number", "-inf"),
    (C.USER_ID, ["u1", ["u2", "u3"]], "not a scalar value", "['u2', 'u3']"),   # list in parquet
    (C.TIMESTAMP, ["2020-01-01", "1500-06-01"], "timestamp out of range", "'1500-06-01'"),
    (C.TIMESTAMP, ["2020-01-01", "3000-01-01T00:00:00Z"], "timestamp out of range",
     "'3000-01-01T00:00:00Z'"),
    (C.TIMESTAMP, np.array(["2020-01-01", "1600-01-01"], dtype="datetime64[us]"),
     "timestamp out of range", "1600-01-01"),
])
def test_known_bad_values_are_named(column: str, values: Any, problem: str, value: str) -> None:
    frame = pd.DataFrame({**GOOD, column: values})
    with pytest.raises(DataError) as err:
        validate_events(frame, source="events.parquet", now=NOW)
    message = str(err.value)
    assert message.startswith(f"events.parquet: column '{column}', row 2: {problem}")
    assert value in message and "\n" not in message


def test_list_typed_parquet_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({**GOOD, C.ITEM_ID: [["i1"], ["i2"]]}).to_parquet(path)
    with pytest.raises(DataError, match="events.parquet: column .item_id., row 1: not a scalar"):
        validate_events(read_table(path), now=NOW)


def test_truncated_gzip_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    data = gzip.compress(b"user_id,item_id,timestamp,event_type\n" + b"u,i,2020-01-01,view\n"
                         * 5000)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"^events.csv.gz: cannot be read as csv.gz: EOFError"):
        read_table(path)


def test_wide_times_inside_the_clock_still_parse() -> None:
    frame = pd.DataFrame({**GOOD, C.TIMESTAMP: ["1600000000", "2262-04-10T00:00:00Z"]})
    out, _ = validate_events(frame, now=pd.Timestamp("2262-04-11", tz="UTC"))
    assert out[C.TIMESTAMP].tolist() == [pd.Timestamp("2020-09-13 12:26:40", tz="UTC"),
                                         pd.Timestamp("2262-04-10", tz="UTC")]


# ---------------------------------------------------------------------- random tables
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["view", "purchase", "1", "inf", "-1", "1e308", "2020-01-01",
                     "1500-01-01", "9999-12-31T23:59:59Z", "true", "", " ", "NaN"]),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.lists(st.integers(), max_size=2), st.binary(max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
EVENT_COLUMNS = [C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE, C.QUANTITY, C.PRICE,
                 C.SESSION_ID, C.DEVICE, "extra"]
ITEM_COLUMNS = [C.ITEM_ID, C.TITLE, C.CATEGORY, C.BRAND, C.PRICE, C.DESCRIPTION, C.IN_STOCK,
                C.FIRST_SEEN]


@st.composite
def tables(draw: st.DrawFn, columns: list[str]) -> pd.DataFrame:
    rows = draw(st.integers(0, 5))
    chosen = draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
    data = {}
    for col in chosen:
        kind = draw(st.sampled_from(["mixed", "uniform"]))
        if kind == "uniform":   # one type per column, as a parquet file would have
            value = draw(SCALARS)
            data[col] = [value] * rows
        else:
            data[col] = draw(st.lists(SCALARS, min_size=rows, max_size=rows))
    return pd.DataFrame(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=tables(EVENT_COLUMNS), items=tables(ITEM_COLUMNS))
def test_random_tables_never_raise_anything_but_a_data_error(events: pd.DataFrame,
                                                             items: pd.DataFrame) -> None:
    try:
        catalog = validate_items(items, source="items.parquet")
    except DataError as exc:
        assert "\n" not in str(exc)
        catalog = None
    try:
        validate_events(events, catalog, source="events.parquet", now=NOW)
    except DataError as exc:
        assert "\n" not in str(exc)
