"""Each fatal problem gives its own error naming file, column, row and value; row-level problems
are dropped and counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from recsys.data.validate import load_dataset
from recsys.errors import DataError

ITEMS = ("item_id,title,category,price\n"
         "a,Red mug,kitchen,4.5\nb,Blue mug,kitchen,5\nc,Lamp,home,20\n")
EVENTS = (
    "user_id,item_id,timestamp,event_type,quantity,price\n"
    "u1,a,2024-01-01T10:00:00Z,view,,\n"
    "u1,a,2024-01-01T10:01:00Z,purchase,2,4.5\n"
    "u2,b,2024-01-02 09:00:00,click,,\n"
    "u2,c,1704193200,add_to_cart,1,20\n"
)


def write(tmp_path: Path, events: str = EVENTS, items: str = ITEMS) -> Path:
    (tmp_path / "events.csv").write_text(events)
    (tmp_path / "items.csv").write_text(items)
    return tmp_path


def error_of(directory: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["validate", str(directory)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, "the CLI error must be one line"
    return err


def test_valid_dataset_has_canonical_types(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path), now=pd.Timestamp("2025-01-01", tz="UTC"))
    ev = ds.events
    assert len(ev) == 4 and ds.report.dropped == {}
    assert str(ev["timestamp"].dtype) == "datetime64[ns, UTC]"
    # naive text is UTC; bare integers are Unix seconds
    assert ev["timestamp"].iloc[2] == pd.Timestamp("2024-01-02 09:00", tz="UTC")
    assert ev["timestamp"].iloc[3] == pd.Timestamp(1704193200, unit="s", tz="UTC")
    assert ev["quantity"].tolist() == [1, 2, 1, 1]
    assert ds.report.defaults_applied == {"quantity missing -> 1": 2}
    assert ds.items["in_stock"].all()


def test_missing_item_id_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = EVENTS.replace("user_id,item_id,", "user_id,product,")
    err = error_of(write(tmp_path, events), capsys)
    assert "events.csv" in err and "missing required column" in err and "'item_id'" in err


def test_unparsable_timestamp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = EVENTS.replace("2024-01-02 09:00:00", "yesterday noon")
    err = error_of(write(tmp_path, events), capsys)
    assert "events.csv" in err and "'timestamp'" in err and "row 3" in err
    assert "'yesterday noon'" in err and "unparsable" in err


def test_unknown_event_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = EVENTS.replace(",purchase,", ",buy,")
    err = error_of(write(tmp_path, events), capsys)
    assert "'event_type'" in err and "row 2" in err and "'buy'" in err
    assert "view, click, add_to_cart, purchase" in err


def test_negative_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = EVENTS.replace("1,20\n", "1,-20\n")
    err = error_of(write(tmp_path, events), capsys)
    assert "'price'" in err and "row 4" in err and "'-20'" in err and "negative" in err


def test_negative_quantity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = EVENTS.replace("purchase,2,", "purchase,-2,")
    err = error_of(write(tmp_path, events), capsys)
    assert "'quantity'" in err and "row 2" in err and "'-2'" in err


def test_duplicate_catalog_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = ITEMS + "b,Other mug,kitchen,6\n"
    err = error_of(write(tmp_path, items=items), capsys)
    assert "items.csv" in err and "duplicate item_id" in err and "row 4" in err and "'b'" in err


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(write(tmp_path, events=""), capsys)
    assert "events.csv" in err and "empty" in err
    err = error_of(write(tmp_path, events="user_id,item_id,timestamp,event_type\n"), capsys)
    assert "no data rows" in err


def test_unknown_device(tmp_path: Path) -> None:
    events = EVENTS.replace("event_type,quantity,price\n", "event_type,quantity,price,device\n")
    lines = events.strip().split("\n")
    lines = ([lines[0]] + [ln + ",desktop" for ln in lines[1:3]]
             + [ln + ",fridge" for ln in lines[3:]])
    with pytest.raises(DataError, match=r"'device', row 3: unknown value 'fridge'"):
        load_dataset(write(tmp_path, "\n".join(lines) + "\n"))


def test_row_level_problems_are_dropped_and_counted(tmp_path: Path) -> None:
    events = EVENTS + (
        "u1,a,2024-01-01T10:00:00Z,view,,\n"      # exact duplicate of row 1
        "u3,zzz,2024-01-03T00:00:00Z,view,,\n"    # item not in catalog
        "u3,a,2031-01-01T00:00:00Z,view,,\n"      # in the future
    )
    ds = load_dataset(write(tmp_path, events), now=pd.Timestamp("2025-01-01", tz="UTC"))
    assert len(ds.events) == 4
    dropped = ds.report.dropped
    assert dropped["exact duplicate event"] == 1
    assert dropped["item_id not in the catalog"] == 1
    assert sum(v for k, v in dropped.items() if k.startswith("timestamp in the future")) == 1
    assert ds.report.events_in == 7 and ds.report.events_out == 4


def test_cli_saves_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = write(tmp_path, EVENTS + "u3,zzz,2024-01-03T00:00:00Z,view,,\n")
    assert main(["validate", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "dropped 1 events: item_id not in the catalog" in out
    saved = (directory / "validation.json").read_text()
    assert '"item_id not in the catalog": 1' in saved


def test_float_string_ids_and_parquet_round_trip(tmp_path: Path) -> None:
    ev = pd.DataFrame({"user_id": [17850.0, 13047.0], "item_id": ["a", "b"],
                       "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
                       "event_type": ["purchase", "view"]})
    (tmp_path / "items.csv").write_text(ITEMS)
    ev.to_parquet(tmp_path / "events.parquet")
    ds = load_dataset(tmp_path)
    assert ds.events["user_id"].astype(str).tolist() == ["17850", "13047"]
