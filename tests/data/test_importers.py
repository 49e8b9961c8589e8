"""Importers: real public files (skipped when ../shared/datasets is absent) and mapped CSVs.

The Online Retail and MovieLens figures asserted here are the ones documented in
docs/importers.md; a change to a cleaning rule must update both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys import columns as C
from recsys.data.importers import REPORT_NAME, ImportResult
from recsys.data.importers.mapped import import_mapped, load_mapping
from recsys.data.importers.movielens import import_movielens
from recsys.data.importers.online_retail import categorise, import_online_retail
from recsys.data.validate import validate
from recsys.errors import ConfigError, DataError

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
RETAIL = DATASETS / "online_retail" / "online_retail.csv.gz"
MOVIELENS = DATASETS / "movielens_100k"
RETAILROCKET = Path(__file__).resolve().parents[2] / "configs" / "mappings" / "retailrocket.toml"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"../shared/datasets not found: {path}")


def _round_trip(result: ImportResult, directory: Path) -> None:
    """Saved output reloads through validation with nothing dropped."""
    result.save(directory)
    dataset = validate(directory)
    assert dataset.report.dropped == {}
    assert dataset.report.events_out == len(result.events)
    assert len(dataset.items) == len(result.items)
    assert json.loads((directory / REPORT_NAME).read_text()) == result.notes


# --- UCI Online Retail ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def retail() -> ImportResult:
    _need(RETAIL)
    return import_online_retail(RETAIL)


def test_online_retail_figures(retail: ImportResult) -> None:
    n = retail.notes
    assert n["rows_read"] == 541_909
    assert (n["removed_cancellation"], n["removed_return"], n["removed_non_product_code"],
            n["removed_missing_customer"], n["removed_price_not_positive"]) == (
        9_288, 1_336, 2_494, 132_514, 33)
    assert n["matching_missing_customer"] == 135_080
    assert n["lines_kept"] == 396_244
    assert n["lines_merged_same_invoice_item_price"] == 9_944
    assert n["events"] == len(retail.events) == 386_300
    assert n["customers"] == retail.events[C.USER_ID].nunique() == 4_334
    assert n["products"] == len(retail.items) == 3_657
    assert n["invoices"] == 18_402
    revenue = float((retail.events[C.QUANTITY] * retail.events[C.PRICE]).sum())
    assert revenue == pytest.approx(8_759_761.65, rel=1e-6)
    assert n["revenue_gbp"] == pytest.approx(revenue, abs=0.01)
    assert n["category_other_share"] == pytest.approx(0.0973, abs=1e-4)


def test_online_retail_is_clean(retail: ImportResult) -> None:
    events, items = retail.events, retail.items
    assert (events[C.EVENT_TYPE] == C.PURCHASE).all()
    assert not events[C.SESSION_ID].astype(str).str.startswith("C").any()
    codes = events[C.ITEM_ID].astype(str)
    assert codes.str.match(r"^\d{5}").all()
    assert not codes.isin(["POST", "DOT", "M", "BANK CHARGES", "23444", "23574"]).any()
    assert (codes == codes.str.upper()).all()
    users = events[C.USER_ID].astype(str)
    assert users.str.fullmatch(r"\d+").all() and not users.str.endswith(".0").any()
    assert (events[C.QUANTITY] >= 1).all() and (events[C.PRICE] > 0).all()
    assert not events.duplicated([C.SESSION_ID, C.ITEM_ID, C.PRICE]).any()
    # one basket, one moment: every line of an invoice carries its first timestamp
    assert (events.groupby(C.SESSION_ID, observed=True)[C.TIMESTAMP].nunique() == 1).all()
    assert events[C.TIMESTAMP].min() == pd.Timestamp("2010-12-01 08:26", tz="UTC")
    assert set(codes) == set(items[C.ITEM_ID])
    assert "other" in set(items[C.CATEGORY]) and items[C.CATEGORY].nunique() == 23


def test_online_retail_catalog_row(retail: ImportResult) -> None:
    row = retail.items.set_index(C.ITEM_ID).loc["85123A"]
    assert row[C.TITLE] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert row[C.CATEGORY] == "candles_lighting"
    assert "CREAM HANGING HEART T-LIGHT HOLDER" in row[C.DESCRIPTION]
    assert row[C.FIRST_SEEN] == pd.Timestamp("2010-12-01 08:26", tz="UTC")


def test_online_retail_saves_and_validates(retail: ImportResult, tmp_path: Path) -> None:
    _round_trip(retail, tmp_path / "retail")


def test_categorise_first_match_wins() -> None:
    titles = pd.Series(["CHRISTMAS RETROSPOT MUG", "RED RETROSPOT MUG", "JUMBO BAG APPLES",
                        "LUNCH BAG RED RETROSPOT", "INFLATABLE POLITICAL GLOBE"])
    assert categorise(titles).tolist() == ["christmas", "mugs_cups", "bags", "lunch_picnic",
                                           "other"]


def test_online_retail_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text("InvoiceNo,StockCode,Quantity\n1,85123A,2\n")
    with pytest.raises(DataError, match=r"retail.csv: missing column\(s\).*Description"):
        import_online_retail(path)


# --- MovieLens 100K ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def movielens() -> ImportResult:
    _need(MOVIELENS)
    return import_movielens(MOVIELENS)


def test_movielens_figures(movielens: ImportResult) -> None:
    events, items, n = movielens.events, movielens.items, movielens.notes
    kinds = events[C.EVENT_TYPE].value_counts()
    assert kinds[C.VIEW] == n["views"] == 100_000
    liked = int(n["ratings_4"]) + int(n["ratings_5"])
    assert kinds[C.PURCHASE] == n["purchases"] == 55_375 == liked
    assert events[C.USER_ID].nunique() == n["users"] == 943
    assert len(items) == events[C.ITEM_ID].nunique() == n["items"] == 1_682
    assert events[C.PRICE].isna().all() and (items[C.PRICE] == 0).all()


def test_movielens_items(movielens: ImportResult) -> None:
    items = movielens.items.set_index(C.ITEM_ID)
    genres = (MOVIELENS / "u.genre").read_text(encoding="latin-1").split()
    assert set(items[C.CATEGORY]) <= {g.split("|")[0] for g in genres}
    assert items.loc["1", C.TITLE] == "Toy Story (1995)"
    assert items.loc["1", C.CATEGORY] == "Animation"
    assert items.loc["1", C.DESCRIPTION] == "Animation, Children's, Comedy; released 1995"
    assert items.loc["1", C.FIRST_SEEN] == pd.Timestamp("1995-01-01", tz="UTC")
    assert items[C.FIRST_SEEN].isna().sum() == 1  # movie 267 has no release date
    assert movielens.notes["category_Drama"] == 531


def test_movielens_saves_and_validates(movielens: ImportResult, tmp_path: Path) -> None:
    _round_trip(movielens, tmp_path / "ml")


def test_movielens_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no u.genre"):
        import_movielens(tmp_path)


# --- generic mapped CSV --------------------------------------------------------------------------

RR_LOG = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221999827,111016,addtocart,318965,
1433221955914,111016,transaction,318965,4000
1433221955914,111016,transaction,318965,4000
1433222000000,111016,view,355908,
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_retailrocket_example(tmp_path: Path) -> None:
    log = _write(tmp_path, "events.csv", RR_LOG)
    result = import_mapped(log, RETAILROCKET)
    events, n = result.events, result.notes
    assert len(events) == n["events"] == 5
    assert n["removed_exact_duplicate"] == 1
    assert (n["events_view"], n["events_add_to_cart"], n["events_purchase"]) == (3, 1, 1)
    assert events[C.TIMESTAMP].is_monotonic_increasing
    first = events.loc[events[C.USER_ID] == "257597", C.TIMESTAMP].iloc[0]
    assert first == pd.Timestamp("2015-06-02 05:02:12.117", tz="UTC")  # unix_ms, to the ms
    purchase = events[events[C.EVENT_TYPE] == C.PURCHASE].iloc[0]
    assert purchase[C.SESSION_ID] == "4000"
    items = result.items.set_index(C.ITEM_ID)
    assert sorted(items.index) == ["248676", "318965", "355908"]
    assert (items[C.CATEGORY] == "unknown").all() and (items[C.PRICE] == 0).all()
    assert items.loc["355908", C.TITLE] == "355908"
    _round_trip(result, tmp_path / "out")


def _mapping(directory: Path, extra: str = "", options: str = "") -> Path:
    text = RETAILROCKET.read_text().split("[options]")[0] + "[options]\n" + options + extra
    return _write(directory, "mapping.toml", text)


def test_unknown_mapping_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.toml", RETAILROCKET.read_text().replace(
        'event_type = "event"', 'event_type = "event"\nvisitor = "visitorid"'))
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'columns.visitor'"):
        load_mapping(path)
    with pytest.raises(ConfigError, match=r"unknown key 'options.drop_unmaped'"):
        load_mapping(_mapping(tmp_path, options="drop_unmaped = true\n"))


def test_bad_mapping_values(tmp_path: Path) -> None:
    bad_type = _write(tmp_path, "t.toml", RETAILROCKET.read_text().replace(
        'addtocart = "add_to_cart"', 'addtocart = "cart"'))
    with pytest.raises(ConfigError, match="t.toml: key 'event_types'.*cart"):
        load_mapping(bad_type)
    bad_zone = _write(tmp_path, "z.toml", RETAILROCKET.read_text().replace(
        'timezone = "UTC"', 'timezone = "Mars/Olympus"'))
    with pytest.raises(ConfigError, match="z.toml: key 'timestamp.timezone'.*Mars/Olympus"):
        load_mapping(bad_zone)


def test_unmapped_event_value(tmp_path: Path) -> None:
    log = _write(tmp_path, "events.csv", RR_LOG + "1433222000001,5,wishlist,355908,\n")
    with pytest.raises(DataError, match=r"events.csv: column 'event', row 7: .*'wishlist'"):
        import_mapped(log, RETAILROCKET)
    result = import_mapped(log, _mapping(tmp_path, options="drop_unmapped = true\n"))
    assert result.notes["removed_unmapped_event_type"] == 1
    assert result.notes["unmapped_event_values"] == "wishlist"
    assert len(result.events) == 5


def test_missing_source_column(tmp_path: Path) -> None:
    log = _write(tmp_path, "events.csv", RR_LOG.replace("visitorid", "visitor"))
    with pytest.raises(DataError, match="events.csv: column 'visitorid'.*not found"):
        import_mapped(log, RETAILROCKET)


def test_incomplete_rows(tmp_path: Path) -> None:
    log = _write(tmp_path, "events.csv", RR_LOG + "1433222000001,,view,355908,\n")
    with pytest.raises(DataError, match="events.csv: row 7: empty user_id"):
        import_mapped(log, RETAILROCKET)
    result = import_mapped(log, _mapping(tmp_path, options="drop_incomplete = true\n"))
    assert result.notes["removed_incomplete"] == 1


def test_wall_clock_formats(tmp_path: Path) -> None:
    log = _write(tmp_path, "orders.csv", "when,customer,sku,amount\n"
                 "05/07/2011 10:30,17850.0,A1,2.5\n"
                 "05/01/2011 10:30,17850.0,B2,\n")
    mapping = _write(tmp_path, "orders.toml", """
[columns]
user_id = "customer"
item_id = "sku"
timestamp = "when"
price = "amount"
[timestamp]
format = "%d/%m/%Y %H:%M"
timezone = "Europe/London"
[items]
default_category = "misc"
[options]
event_type = "purchase"
""")
    result = import_mapped(log, mapping)
    events = result.events.set_index(C.ITEM_ID)
    assert events.loc["A1", C.TIMESTAMP] == pd.Timestamp("2011-07-05 09:30", tz="UTC")  # BST
    assert events.loc["B2", C.TIMESTAMP] == pd.Timestamp("2011-01-05 10:30", tz="UTC")  # GMT
    assert set(result.events[C.USER_ID].astype(str)) == {"17850"}
    items = result.items.set_index(C.ITEM_ID)
    assert items.loc["A1", C.PRICE] == 2.5 and items.loc["B2", C.PRICE] == 0.0
    assert (items[C.CATEGORY] == "misc").all()


def test_iso_timestamps_with_and_without_offset(tmp_path: Path) -> None:
    log = _write(tmp_path, "e.csv", "t,u,i,e\n2020-06-01T12:00:00+02:00,u1,i1,view\n"
                 "2020-06-01 12:00:00,u1,i2,view\n")
    mapping = _write(tmp_path, "m.toml", '[columns]\nuser_id = "u"\nitem_id = "i"\n'
                     'timestamp = "t"\nevent_type = "e"\n[timestamp]\nformat = "iso8601"\n'
                     'timezone = "America/New_York"\n')
    times = import_mapped(log, mapping).events.set_index(C.ITEM_ID)[C.TIMESTAMP]
    assert times["i1"] == pd.Timestamp("2020-06-01 10:00", tz="UTC")
    assert times["i2"] == pd.Timestamp("2020-06-01 16:00", tz="UTC")


def test_items_file(tmp_path: Path) -> None:
    log = _write(tmp_path, "events.csv", RR_LOG)
    items = _write(tmp_path, "products.csv", "itemid,name,cat,price\n"
                   "355908,Lamp,lighting,12.5\n248676,Mug,,\n999,Unsold,toys,1\n")
    mapping = _mapping(tmp_path, extra='[items.columns]\nitem_id = "itemid"\ntitle = "name"\n'
                       'category = "cat"\n')
    result = import_mapped(log, mapping, items_path=items)
    catalog = result.items.set_index(C.ITEM_ID)
    assert catalog.loc["355908", C.TITLE] == "Lamp"
    assert catalog.loc["248676", C.CATEGORY] == "unknown"
    assert catalog.loc["999", C.CATEGORY] == "toys"
    assert catalog.loc["318965", C.TITLE] == "318965"  # added from the events
    assert result.notes["items_added_from_events"] == 1
    assert result.notes["items_default_category"] == 1
    _round_trip(result, tmp_path / "out")


def test_bad_values_name_the_row(tmp_path: Path) -> None:
    log = _write(tmp_path, "events.csv", RR_LOG + "yesterday,5,view,355908,\n")
    with pytest.raises(DataError, match=r"column 'timestamp', row 7: not a Unix time 'yesterday'"):
        import_mapped(log, RETAILROCKET)
    no_type = _write(tmp_path, "m.toml", '[columns]\nuser_id = "visitorid"\nitem_id = "itemid"\n'
                     'timestamp = "timestamp"\n[timestamp]\nformat = "unix_ms"\n')
    with pytest.raises(ConfigError, match="m.toml: no event type for events.csv"):
        import_mapped(_write(tmp_path, "events.csv", RR_LOG.replace("event,", "kind,")), no_type)


def test_online_retail_bad_value(tmp_path: Path) -> None:
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    path = _write(tmp_path, "retail.csv", header +
                  "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
                  "536366,71053,LANTERN,6,2010-12-01 08:28:00,3.39,guest,United Kingdom\n")
    with pytest.raises(DataError, match="column 'CustomerID', row 2: not an integer id 'guest'"):
        import_online_retail(path)
    path.write_text(path.read_text().replace("guest", "17850.0"))
    result = import_online_retail(path)
    assert result.notes["events"] == 2 and result.notes["customers"] == 1
