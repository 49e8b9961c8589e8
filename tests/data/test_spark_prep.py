"""The Spark preparation engine against the pandas path, on small tables with known answers.

One Spark session (local[2], the ``spark_settings`` fixture in conftest.py) serves every test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.interactions import InteractionConfig
from recsys.data.prepare import PrepareConfig, Prepared, prepare
from recsys.errors import DataError

pytest.importorskip("pyspark", reason="the Spark engine needs: pip install -e '.[spark]'")

NOW = pd.Timestamp("2024-03-01", tz="UTC")
ITEMS = "item_id,title,category,price\nx,X,c1,1.0\ny,Y,c1,2.0\nz,Z,c2,3.0\nw,W,c2,4.0\n"


def write(directory: Path, events: str, items: str = ITEMS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "events.csv").write_text(events)
    (directory / "items.csv").write_text(items)
    return directory


def both(directory: Path, settings, config: PrepareConfig | None = None,  # noqa: ANN001
         **kwargs: object) -> tuple[Prepared, Prepared]:
    a = prepare(directory, config, engine="pandas", now=NOW, **kwargs)  # type: ignore[arg-type]
    b = prepare(directory, config, engine="spark", now=NOW, spark=settings,
                **kwargs)  # type: ignore[arg-type]
    return a, b


def assert_same(a: Prepared, b: Prepared, rtol: float = 1e-5) -> None:
    assert a.report == b.report
    assert a.user_map.external_ids.tolist() == b.user_map.external_ids.tolist()
    assert a.item_map.external_ids.tolist() == b.item_map.external_ids.tolist()
    assert a.reference_time == b.reference_time
    assert a.matrix.shape == b.matrix.shape
    assert np.array_equal(a.matrix.indptr, b.matrix.indptr)
    assert np.array_equal(a.matrix.indices, b.matrix.indices)
    np.testing.assert_allclose(a.matrix.data, b.matrix.data, rtol=rtol)
    np.testing.assert_allclose(a.item_sums.total, b.item_sums.total, rtol=rtol)
    assert a.item_sums.last_days.keys() == b.item_sums.last_days.keys()
    for d in a.item_sums.last_days:
        np.testing.assert_allclose(a.item_sums.last_days[d], b.item_sums.last_days[d], rtol=rtol)
    assert np.array_equal(a.buyers, b.buyers)
    assert (a.cooccurrence.pairs != b.cooccurrence.pairs).nnz == 0
    assert np.array_equal(a.cooccurrence.baskets, b.cooccurrence.baskets)


def test_drops_and_defaults_are_counted_alike(tmp_path: Path, spark_settings) -> None:  # noqa: ANN001
    events = ("user_id,item_id,timestamp,event_type,quantity\n"
              "a,x,2024-01-01T10:00:00Z,view,\n"           # quantity missing -> 1
              "a,x,2024-01-01T10:00:00Z,view,\n"           # row 2: duplicate of row 1
              "a,nope,2024-01-02T10:00:00Z,click,1\n"      # row 3: unknown item
              "b,y,2024-05-01T00:00:00Z,purchase,2\n"      # row 4: after NOW
              "b,y,2024-01-03T00:00:00Z,purchase,2\n"
              "a,x,2024-01-01T10:00:00Z,view,\n"           # another copy of row 1
              "c,nope,2024-01-04T00:00:00Z,view,1\n")
    a, b = both(write(tmp_path, events), spark_settings)
    assert_same(a, b)
    report = b.report
    assert (report.events_in, report.events_out, report.items) == (7, 2, 4)
    assert report.dropped == {"exact duplicate event": 2,
                              f"timestamp in the future (after {NOW.isoformat()})": 1,
                              "item_id not in the catalog": 2}
    assert report.examples["exact duplicate event"].startswith("row 2: user_id=a item_id=x")
    assert report.examples["item_id not in the catalog"] == (
        "row 3: user_id=a item_id=nope timestamp=2024-01-02 10:00:00+00:00")
    assert report.defaults_applied == {"quantity missing -> 1": 3}


BAD = [
    ("a,x,2024-01-01,buy,1", "column 'event_type', row 2: unknown value 'buy'"),
    (" ,x,2024-01-01,view,1", "column 'user_id', row 2: empty value"),
    (",x,2024-01-01,view,1", "column 'user_id', row 2: empty value nan"),
    ("a,x,yesterday,view,1", "column 'timestamp', row 2: unparsable timestamp 'yesterday'"),
    ("a,x,2024-01-01,view,0", "column 'quantity', row 2: value below minimum '0'"),
    ("a,x,2024-01-01,view,1.5", "column 'quantity', row 2: non-integer value '1.5'"),
    ("a,x,2024-01-01,view,two", "column 'quantity', row 2: not a number 'two'"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_fatal_errors_name_the_same_row_and_value(tmp_path: Path, spark_settings, line: str,  # noqa: ANN001
                                                  message: str) -> None:
    events = ("user_id,item_id,timestamp,event_type,quantity\n"
              "a,x,2024-01-01,view,1\n" + line + "\n" + line + "\n")
    directory = write(tmp_path, events)
    with pytest.raises(DataError) as pandas_error:
        prepare(directory, now=NOW)
    with pytest.raises(DataError) as spark_error:
        prepare(directory, engine="spark", now=NOW, spark=spark_settings)
    assert str(spark_error.value) == str(pandas_error.value)
    assert f"events.csv: {message}" in str(spark_error.value)
    assert "2 row(s) affected" in str(spark_error.value)


def test_missing_column_and_empty_table(tmp_path: Path, spark_settings) -> None:  # noqa: ANN001
    directory = write(tmp_path / "a", "user_id,item_id,event_type\na,x,view\n")
    with pytest.raises(DataError, match=r"missing required column\(s\) \['timestamp'\]"):
        prepare(directory, engine="spark", now=NOW, spark=spark_settings)
    directory = write(tmp_path / "b", "user_id,item_id,timestamp,event_type\n")
    with pytest.raises(DataError, match="events.csv: no data rows"):
        prepare(directory, engine="spark", now=NOW, spark=spark_settings)


def test_weights_quantity_and_decay_known_values(tmp_path: Path, spark_settings) -> None:  # noqa: ANN001
    events = ("user_id,item_id,timestamp,event_type,quantity\n"
              "a,x,2024-01-11T00:00:00Z,purchase,3\n"     # the last event: age 0
              "a,x,2024-01-01T00:00:00Z,view,1\n"         # 10 days old: half its weight
              "a,y,2024-01-06T00:00:00Z,click,1\n"        # 5 days old
              "b,y,2024-01-11T00:00:00Z,add_to_cart,1\n")
    config = PrepareConfig(interactions=InteractionConfig(half_life_days=10))
    a, b = both(write(tmp_path, events), spark_settings, config)
    assert_same(a, b)
    m = b.matrix.toarray()
    x, y = (b.item_map.to_internal([i])[0] for i in ("x", "y"))
    assert m[0, x] == pytest.approx(8 * math.log2(4) + 1 * 0.5, rel=1e-6)
    assert m[0, y] == pytest.approx(2 * 0.5 ** 0.5, rel=1e-6)
    assert m[1, y] == pytest.approx(4.0, rel=1e-6)
    # item sums use the same weights; the 7-day window leaves the 10-day-old view out
    assert b.item_sums.last_days[7.0][x] == pytest.approx(16.0, rel=1e-6)
    assert b.item_sums.total[x] == pytest.approx(16.5, rel=1e-6)
    assert b.buyers[x] == 1 and b.buyers[y] == 0


def test_cooccurrence_baskets_and_truncation(tmp_path: Path, spark_settings) -> None:  # noqa: ANN001
    events = ("user_id,item_id,timestamp,event_type,session_id\n"
              # session s1: z first, then x, y at the same second (file order breaks the tie)
              "a,x,2024-01-01T10:05:00Z,add_to_cart,s1\n"
              "a,z,2024-01-01T10:00:00Z,purchase,s1\n"
              "a,y,2024-01-01T10:05:00Z,purchase,s1\n"
              "a,x,2024-01-01T10:06:00Z,purchase,s1\n"
              # no session: a user-day basket for b on Jan 2, another on Jan 3
              "b,x,2024-01-02T08:00:00Z,purchase,\n"
              "b,w,2024-01-02T23:00:00Z,purchase,\n"
              "b,y,2024-01-03T00:30:00Z,purchase,\n"
              "b,z,2024-01-03T01:00:00Z,view,\n")     # views are not basket events
    config = PrepareConfig(max_basket=2)
    a, b = both(write(tmp_path, events), spark_settings, config)
    assert_same(a, b)
    ids = {i: int(b.item_map.to_internal([i])[0]) for i in "xyzw"}
    pairs = b.cooccurrence.pairs.toarray()
    assert pairs[ids["z"], ids["x"]] == pairs[ids["x"], ids["z"]] == 1   # s1 keeps z, x
    assert pairs[ids["x"], ids["y"]] == 0                                # y truncated away
    assert pairs[ids["x"], ids["w"]] == 1                                # b's Jan 2 basket
    assert pairs[ids["w"], ids["y"]] == 0                                # different days
    assert b.cooccurrence.baskets.tolist() == [2, 1, 1, 1]   # x, y, z, w (catalog order)


def test_window_and_parquet_types(tmp_path: Path, spark_settings) -> None:  # noqa: ANN001
    """Typed Parquet: float ids become integers, naive times are UTC, nanoseconds are read."""
    tmp_path.mkdir(exist_ok=True)
    events = pd.DataFrame({
        "user_id": [17850.0, 17850.0, 13047.0, 13047.0],
        "item_id": ["x", "y", "x", "z"],
        "timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-05 10:00",
                                     "2024-01-03 09:00", "2024-01-09 09:00"]),
        "event_type": pd.Categorical(["purchase", "view", "add_to_cart", "purchase"]),
        "quantity": [2, 1, 1, 5],
        "price": [1.0, np.nan, 3.0, 2.5],
    })
    events.to_parquet(tmp_path / "events.parquet", index=False)
    (tmp_path / "items.csv").write_text(ITEMS)
    a, b = both(tmp_path, spark_settings, end=pd.Timestamp("2024-01-06", tz="UTC"))
    assert_same(a, b)
    assert b.user_map.external_ids.tolist() == ["13047", "17850"]
    assert b.matrix.nnz == 3     # the Jan 9 event is outside the window
    assert b.reference_time == pd.Timestamp("2024-01-05 10:00", tz="UTC")


def test_timestamp_formats_parse_alike(tmp_path: Path, spark_settings) -> None:  # noqa: ANN001
    events = ("user_id,item_id,timestamp,event_type\n"
              "a,x,2024-01-01T10:00:00Z,view\n"
              "a,y,2024-01-01 11:00:00,view\n"
              "a,z,2024-01-02,view\n"
              "b,x,2024-01-02T10:00:00+02:00,view\n"
              "b,y,1704200000,view\n"
              "b,z, 2024-01-03T00:00:00.250Z ,view\n")
    config = PrepareConfig(interactions=InteractionConfig(half_life_days=1))
    a, b = both(write(tmp_path, events), spark_settings, config)
    assert_same(a, b, rtol=1e-6)
    assert b.reference_time == pd.Timestamp("2024-01-03T00:00:00.250Z")


def test_cli_prepare_saves_what_loads_back(tmp_path: Path, spark_settings,  # noqa: ANN001
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    events = ("user_id,item_id,timestamp,event_type,quantity,session_id\n"
              "a,x,2024-01-01T10:00:00Z,purchase,2,s1\n"
              "a,y,2024-01-01T10:01:00Z,purchase,1,s1\n"
              "b,y,2024-01-02T10:00:00Z,view,1,s2\n"
              "b,z,2024-02-02T10:00:00Z,view,1,s3\n")
    directory = write(tmp_path / "data", events)
    out = tmp_path / "prepared"
    code = main(["prepare", str(directory), "--engine", "spark", "--until", "2024-02-01",
                 "--now", NOW.isoformat(), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "matrix: 2 users x 4 items, 3 nonzeros" in printed
    loaded = Prepared.load(out)
    assert loaded.engine == "spark"
    assert_same(prepare(directory, engine="pandas", now=NOW,
                        end=pd.Timestamp("2024-02-01", tz="UTC")), loaded)
    assert main(["prepare", str(directory), "--engine", "spark", "--now", "not a time"]) == 2
    assert "--now 'not a time': not a time" in capsys.readouterr().err
