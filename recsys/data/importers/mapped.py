"""Import any event log in CSV or Parquet, described by a TOML mapping file.

The mapping names, for each canonical column, the source column that holds it, translates the
source's event names to the canonical vocabulary and says how timestamps are written::

    [columns]            # canonical = source column
    user_id = "visitorid"
    item_id = "itemid"
    timestamp = "timestamp"
    event_type = "event"
    [event_types]        # source value = canonical value
    view = "view"
    addtocart = "add_to_cart"
    transaction = "purchase"
    [timestamp]
    format = "unix_ms"   # unix_s, iso8601, or a strftime pattern like "%d/%m/%Y %H:%M"
    timezone = "UTC"     # zone of naive wall-clock times
    [items]
    default_category = "unknown"
    [options]
    drop_unmapped = false

Unknown keys are an error (a typo must not be silently ignored). ``configs/mappings/`` holds
examples; ``docs/importers.md`` documents every key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from recsys import columns as C
from recsys.data.importers import ImportResult, Note, finish
from recsys.data.io import read_table
from recsys.data.validate import validate_items
from recsys.errors import ConfigError, DataError

UNIX_UNITS: dict[str, Literal["s", "ms"]] = {"unix_s": "s", "unix_ms": "ms"}
OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"  # an ISO 8601 string that carries its own UTC offset


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventColumns(_Strict):
    """Canonical event column -> source column; optional ones default to a same-named column."""

    user_id: str
    item_id: str
    timestamp: str
    event_type: str | None = None
    quantity: str | None = None
    price: str | None = None
    session_id: str | None = None
    device: str | None = None


class ItemColumns(_Strict):
    """Canonical item column -> column of the items file (default: the same name)."""

    item_id: str | None = None
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: str | None = None
    description: str | None = None
    in_stock: str | None = None
    first_seen: str | None = None


class TimestampSpec(_Strict):
    """How the source writes time. Naive wall-clock times are read in ``timezone``."""

    format: str = "iso8601"
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in (*UNIX_UNITS, "iso8601") and "%" not in value:
            raise ValueError(f"{value!r} is not unix_s, unix_ms, iso8601 or a strftime pattern")
        return value


class ItemsSpec(_Strict):
    """How the catalog is built: from an items file (``columns``) or from the event item ids."""

    default_category: str = "unknown"
    columns: ItemColumns = ItemColumns()


class Options(_Strict):
    """Cleaning switches; each defaults to the strict choice (raise rather than drop)."""

    drop_unmapped: bool = False          # drop rows whose event value is not in [event_types]
    drop_incomplete: bool = False        # drop rows with an empty user, item, time or event
    event_type: str | None = None        # constant event type when the log has no such column
    unknown_items: Literal["add", "drop"] = "add"  # events for items missing from the items file

    @field_validator("event_type")
    @classmethod
    def _canonical(cls, value: str | None) -> str | None:
        if value is not None and value not in C.EVENT_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(C.EVENT_TYPES)}")
        return value


class Mapping(_Strict):
    """A whole mapping file."""

    columns: EventColumns
    event_types: dict[str, str] = {}
    timestamp: TimestampSpec = TimestampSpec()
    items: ItemsSpec = ItemsSpec()
    options: Options = Options()

    @field_validator("event_types")
    @classmethod
    def _canonical_values(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = {k: v for k, v in value.items() if v not in C.EVENT_TYPES}
        if wrong:
            raise ValueError(f"{wrong} map to values outside {', '.join(C.EVENT_TYPES)}")
        return value


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a TOML mapping file; any problem is a ConfigError naming file and key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the mapping file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{path.name}: unknown key '{key}'") from exc
        if first["type"] == "missing":
            raise ConfigError(f"{path.name}: missing required key '{key}'") from exc
        raise ConfigError(f"{path.name}: key '{key}': {first['msg']}") from exc


def _fail(source: str, column: str, mask: np.ndarray, raw: pd.Series, problem: str,
          hint: str = "") -> None:
    """Raise a DataError naming the first row (1 = first data row) where ``mask`` holds."""
    if mask.any():
        pos = int(np.flatnonzero(mask)[0])
        raise DataError(f"{source}: column '{column}', row {pos + 1}: {problem} "
                        f"{raw.iloc[pos]!r} ({int(mask.sum()):,} row(s) affected{hint})")


def _text(raw: pd.Series) -> pd.Series:
    """Ids and labels as stripped strings; whole floats (17850.0) lose the '.0'; '' -> NA."""
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = raw.notna() & (raw == np.floor(raw))
        text = raw.astype("string").where(~whole, raw[whole].astype("Int64").astype("string"))
    else:
        text = raw.astype("string")
    text = text.str.strip()
    return text.mask(text == "")


def _id_text(raw: pd.Series, canonical: str, notes: dict[str, Note]) -> pd.Series:
    """Id column as text; a column whose every id reads like "17850.0" loses the ".0".

    Spreadsheet exports turn integer ids into floats. Only a whole column is fixed, never a
    single value, so a genuine id such as "3.0" among "A1", "B2" stays as written.
    """
    text = _text(raw)
    present = text.dropna()
    if len(present) and present.str.fullmatch(r"-?\d+\.0+").all():
        notes[f"{canonical}_float_suffix_removed"] = len(present)
        text = text.str.replace(r"\.0+$", "", regex=True)
    return text


def parse_time(raw: pd.Series, spec: TimestampSpec, source: str, column: str) -> pd.Series:
    """Parse a timestamp column per ``spec`` to ``datetime64[ns, UTC]`` (NaT where empty)."""
    zone = spec.timezone
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return _localize(raw, zone)
    empty = _text(raw).isna().to_numpy() if not pd.api.types.is_numeric_dtype(raw.dtype) \
        else raw.isna().to_numpy()
    if spec.format in UNIX_UNITS:
        numbers = pd.to_numeric(raw, errors="coerce")
        _fail(source, column, numbers.isna().to_numpy() & ~empty, raw,
              "not a Unix time", f"; format is {spec.format}")
        parsed = pd.to_datetime(numbers, unit=UNIX_UNITS[spec.format], utc=True)
    else:
        text = _text(raw)
        if spec.format == "iso8601":
            aware = text.str.contains(OFFSET, regex=True).fillna(False).to_numpy()
            parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
            if aware.any():
                parsed[aware] = pd.to_datetime(text[aware], format="ISO8601", utc=True,
                                               errors="coerce")
            if (~aware).any():
                naive = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
                parsed[~aware] = _localize(naive, zone)
        else:
            parsed = pd.to_datetime(text, format=spec.format, errors="coerce")
            if isinstance(parsed.dtype, pd.DatetimeTZDtype):
                parsed = parsed.dt.tz_convert("UTC")
            else:
                parsed = _localize(parsed, zone)
        _fail(source, column, parsed.isna().to_numpy() & ~empty, raw,
              "unparsable timestamp", f"; format is {spec.format!r}")
    return parsed.astype("datetime64[ns, UTC]")


def _number(raw: pd.Series, source: str) -> pd.Series:
    """A numeric column (empty -> NaN); text that is not a number is an error naming the row."""
    values = pd.to_numeric(_text(raw) if not pd.api.types.is_numeric_dtype(raw.dtype) else raw,
                           errors="coerce").astype("float64")
    blank = raw.isna().to_numpy() | (_text(raw).isna().to_numpy())
    _fail(source, str(raw.name), values.isna().to_numpy() & ~blank, raw, "not a number")
    return values


def _localize(naive: pd.Series, zone: str) -> pd.Series:
    # the repeated autumn hour is read as standard time; the skipped spring hour moves forward
    ambiguous = np.zeros(len(naive), dtype=bool)
    return naive.dt.tz_localize(zone, ambiguous=ambiguous, nonexistent="shift_forward") \
        .dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _column(frame: pd.DataFrame, name: str | None, canonical: str, source: str,
            what: str) -> pd.Series | None:
    """The source column for ``canonical``: the mapped one (must exist) or a same-named one."""
    if name is None:
        return frame[canonical] if canonical in frame.columns else None
    if name not in frame.columns:
        raise DataError(f"{source}: column '{name}' (mapped to {what} '{canonical}') not found; "
                        f"columns are {list(frame.columns)}")
    return frame[name]


def _events(frame: pd.DataFrame, mapping: Mapping, source: str, mapping_name: str,
            notes: dict[str, Note]) -> pd.DataFrame:
    """Source rows -> canonical events, with the row-level cleaning counted in ``notes``."""
    cols, opts = mapping.columns, mapping.options
    get = {c: _column(frame, getattr(cols, c), c, source, "event column") for c in C.EVENT_COLUMNS}
    out = pd.DataFrame(index=frame.index)
    out[C.USER_ID] = _id_text(frame[cols.user_id], C.USER_ID, notes)
    out[C.ITEM_ID] = _id_text(frame[cols.item_id], C.ITEM_ID, notes)
    out[C.TIMESTAMP] = parse_time(frame[cols.timestamp], mapping.timestamp, source,
                                  cols.timestamp)

    raw_type = get[C.EVENT_TYPE]
    if raw_type is None:
        if opts.event_type is None:
            raise ConfigError(f"{mapping_name}: no event type for {source}: map "
                              f"columns.event_type or set options.event_type")
        out[C.EVENT_TYPE] = opts.event_type
        unmapped = np.zeros(len(frame), dtype=bool)
    else:
        values = _text(raw_type)
        table = mapping.event_types or {t: t for t in C.EVENT_TYPES}
        out[C.EVENT_TYPE] = values.map(table)
        unmapped = (values.notna() & out[C.EVENT_TYPE].isna()).to_numpy()
        if unmapped.any() and not opts.drop_unmapped:
            _fail(source, str(raw_type.name), unmapped, raw_type,
                  "event value not in [event_types]",
                  "; list it there or set options.drop_unmapped = true")
        notes["unmapped_event_values"] = ", ".join(sorted(values[unmapped].unique()))

    for canonical in (C.QUANTITY, C.PRICE):
        raw = get[canonical]
        if raw is not None:
            out[canonical] = _number(raw, source)
    if C.QUANTITY in out:
        out[C.QUANTITY] = out[C.QUANTITY].fillna(1.0)
    for canonical in (C.SESSION_ID, C.DEVICE):
        raw = get[canonical]
        if raw is not None:
            out[canonical] = _text(raw)

    incomplete = out[list(C.EVENT_REQUIRED)].isna().any(axis=1).to_numpy() & ~unmapped
    if incomplete.any() and not opts.drop_incomplete:
        first = int(np.flatnonzero(incomplete)[0])
        empty = [c for c in C.EVENT_REQUIRED if pd.isna(out[c].iloc[first])]
        raise DataError(f"{source}: row {first + 1}: empty {', '.join(empty)} "
                        f"({int(incomplete.sum()):,} incomplete row(s); set "
                        f"options.drop_incomplete = true to drop them)")
    notes["removed_unmapped_event_type"] = int(unmapped.sum())
    notes["removed_incomplete"] = int(incomplete.sum())
    out = out[~unmapped & ~incomplete]

    duplicate = out.duplicated(keep="first").to_numpy()
    notes["removed_exact_duplicate"] = int(duplicate.sum())
    out = out[~duplicate]
    future = (out[C.TIMESTAMP] > pd.Timestamp.now(tz="UTC")).to_numpy()
    notes["removed_future_timestamp"] = int(future.sum())
    return out[~future]


def _median_prices(events: pd.DataFrame) -> pd.Series:
    if C.PRICE not in events:
        return pd.Series(dtype="float64")
    prices = pd.to_numeric(events[C.PRICE], errors="coerce")
    return prices.groupby(events[C.ITEM_ID]).median().dropna()


def _catalog_from_events(events: pd.DataFrame, category: str) -> pd.DataFrame:
    ids = events[C.ITEM_ID].astype(str)
    first_seen = events[C.TIMESTAMP].groupby(ids).min()
    return pd.DataFrame({
        C.ITEM_ID: first_seen.index.to_numpy(dtype=str),
        C.TITLE: first_seen.index.to_numpy(dtype=str),
        C.CATEGORY: category,
        C.PRICE: _median_prices(events).reindex(first_seen.index).fillna(0.0).to_numpy(),
        C.IN_STOCK: True,
        C.FIRST_SEEN: first_seen.array,
    })


def _catalog_from_file(path: Path, mapping: Mapping, events: pd.DataFrame,
                       notes: dict[str, Note]) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = read_table(path).frame
    spec = mapping.items
    items = pd.DataFrame(index=frame.index)
    for canonical in C.ITEM_COLUMNS:
        raw = _column(frame, getattr(spec.columns, canonical), canonical, path.name, "item column")
        if raw is not None and canonical == C.ITEM_ID:
            items[canonical] = _id_text(raw, "items_item_id", notes)
        elif raw is not None:
            items[canonical] = _text(raw) if canonical in (C.TITLE, C.CATEGORY) else raw
    if C.ITEM_ID not in items:
        raise DataError(f"{path.name}: no item id column (map it with [items.columns] item_id = "
                        f"\"...\"); columns are {list(frame.columns)}")
    for canonical, default in ((C.TITLE, items[C.ITEM_ID]),
                               (C.CATEGORY, pd.Series(spec.default_category, index=items.index))):
        current = items[canonical] if canonical in items else pd.Series(pd.NA, index=items.index)
        notes[f"items_default_{canonical}"] = int(current.isna().sum())
        items[canonical] = current.fillna(default)
    price = (_number(items[C.PRICE], path.name) if C.PRICE in items
             else pd.Series(np.nan, index=items.index))
    notes["items_default_price"] = int(price.isna().sum())
    medians = items[C.ITEM_ID].map(_median_prices(events)).astype("float64")
    items[C.PRICE] = price.fillna(medians).fillna(0.0)
    items = validate_items(items, source=path.name)

    missing = ~events[C.ITEM_ID].isin(items[C.ITEM_ID]).to_numpy()
    if mapping.options.unknown_items == "drop":
        notes["removed_item_not_in_items_file"] = int(missing.sum())
        return items, events[~missing]
    extra = _catalog_from_events(events[missing], spec.default_category)
    notes["items_added_from_events"] = len(extra)
    return pd.concat([items, extra], ignore_index=True), events


def import_mapped(path: str | Path, mapping_path: str | Path,
                  items_path: str | Path | None = None) -> ImportResult:
    """Import an event log (CSV/Parquet) with a TOML mapping; items from a file or the events.

    Example::

        import_mapped("events.csv", "configs/mappings/retailrocket.toml").save("data/rr")
    """
    path = Path(path)
    mapping = load_mapping(mapping_path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a CSV or Parquet event log)")
    frame = read_table(path).frame.reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{path.name}: no data rows")
    notes: dict[str, Note] = {"rows_read": len(frame)}
    events = _events(frame, mapping, path.name, Path(mapping_path).name, notes)
    if events.empty:
        raise DataError(f"{path.name}: no event left after cleaning ({notes})")
    if items_path is None:
        items = _catalog_from_events(events, mapping.items.default_category)
        notes["items_from_events"] = len(items)
    else:
        items, events = _catalog_from_file(Path(items_path), mapping, events, notes)
    events = events.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)
    counts = events[C.EVENT_TYPE].value_counts()
    notes.update({
        "events": len(events),
        "users": int(events[C.USER_ID].nunique()),
        "items": len(items),
        **{f"events_{t}": int(counts.get(t, 0)) for t in C.EVENT_TYPES},
        "first_event": str(events[C.TIMESTAMP].min()),
        "last_event": str(events[C.TIMESTAMP].max()),
    })
    return finish(events, items, notes, path.name)
