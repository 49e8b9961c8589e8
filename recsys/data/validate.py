"""Validate raw event and item tables against the canonical contract.

Two kinds of problem:

* **fatal** (the file cannot be trusted): missing required column, empty table, empty required
  value, unparsable timestamp, unknown event type or device, negative/invalid price or quantity,
  duplicate ``item_id`` in the catalog. A :class:`~recsys.errors.DataError` names the file, the
  column, the row (1 = first data row, i.e. line 2 of a CSV) and the offending value.
* **row-level** (the file is fine, some rows are not usable): events for items missing from the
  catalog, exact duplicate events, timestamps in the future. These rows are dropped and counted by
  reason in a :class:`ValidationReport`; nothing is dropped silently.

Canonical dtypes after validation: ids are ``category`` of strings (compact at 10M rows),
``timestamp`` is ``datetime64[ns, UTC]``, ``event_type``/``device`` are categoricals over the
fixed vocabularies, ``quantity`` is int32 (default 1), ``price`` is float64 (NaN when unknown).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.io import RawTable, read_raw
from recsys.errors import DataError

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
MAX_QUANTITY = float(np.iinfo(np.int32).max)   # quantity is int32: beyond this it would wrap
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f"})


@dataclass
class ValidationReport:
    """What validation kept and dropped, by reason."""

    events_in: int = 0
    events_out: int = 0
    items: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    defaults_applied: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"events read: {self.events_in:,}  kept: {self.events_out:,}  items: {self.items:,}"]
        if not self.dropped:
            out.append("dropped: none")
        for reason, n in self.dropped.items():
            out.append(f"dropped {n:,} events: {reason} (e.g. {self.examples.get(reason, '')})")
        for what, n in self.defaults_applied.items():
            out.append(f"default applied to {n:,} rows: {what}")
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass(frozen=True)
class Dataset:
    """Validated canonical frames plus the report of what validation did."""

    events: pd.DataFrame
    items: pd.DataFrame
    report: ValidationReport


def _fail(source: str, column: str, mask: np.ndarray | pd.Series, raw: pd.Series,
          problem: str, expected: str) -> None:
    """Raise a DataError naming the first row where ``mask`` holds."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    pos = int(np.flatnonzero(mask)[0])
    n_bad = int(mask.sum())
    value = raw.iloc[pos]
    raise DataError(
        f"{source}: column '{column}', row {pos + 1}: {problem} {value!r} "
        f"(expected {expected}; {n_bad:,} row(s) affected)"
    )


_SCALARS = (str, int, float, bool, np.generic, datetime, pd.Timestamp)


def _check_cells(frame: pd.DataFrame, source: str) -> None:
    """Every cell of a mixed (object) column is a scalar: text, a number, a bool or a time.
    A parquet file can hold lists, maps or bytes, which would otherwise be stringified."""
    for column in frame.columns:
        raw = frame[column]
        if raw.dtype != object:
            continue
        odd = raw.map(lambda v: not (v is None or v is pd.NA or isinstance(v, _SCALARS)))
        _fail(source, str(column), odd.to_numpy(dtype=bool), raw, "not a scalar value",
              "text, a number or a time (not a list, map or bytes)")
        broken = raw.map(lambda v: isinstance(v, str) and not _encodes(v))
        _fail(source, str(column), broken.to_numpy(dtype=bool), raw, "invalid Unicode text",
              "UTF-8 text")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def _no_traceback(source: str) -> Iterator[None]:
    """What the explicit checks did not foresee still ends as one line naming the file (the
    random-table test in tests/data feeds the validator what nobody thought of)."""
    try:
        yield
    except DataError:
        raise
    except (TypeError, ValueError, OverflowError, ArithmeticError, KeyError,
            AttributeError) as exc:
        raise DataError(f"{source}: cannot be validated ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _require(frame: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing required column(s) {missing} "
                        f"(found {list(frame.columns)})")
    if len(frame) == 0:
        raise DataError(f"{source}: no data rows (expected at least one row after the header)")


def _ids(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Required string id column -> category of stripped strings; empty values are fatal."""
    raw = frame[column]
    if isinstance(raw.dtype, pd.CategoricalDtype):
        cats = raw.cat.categories.astype(str).str.strip()
        codes = raw.cat.codes.to_numpy()
        bad = codes < 0
        if not bad.all():
            bad |= np.asarray(cats.str.len() == 0)[np.maximum(codes, 0)]
        _fail(source, column, bad, raw, "empty value", "a non-empty id")
        if cats.duplicated().any() or not cats.equals(raw.cat.categories):
            return pd.Series(pd.Categorical(cats[codes]), index=frame.index, name=column)
        return raw.cat.remove_unused_categories()
    text = raw.astype("string").str.strip()
    if pd.api.types.is_float_dtype(raw.dtype):
        # 17850.0 -> "17850": float ids come from CSV tools that lost the integer type
        whole = raw.notna() & (raw == np.floor(raw)) & (raw.abs() < 2.0**53)
        text = text.where(~whole, raw[whole].astype("Int64").astype("string"))
    _fail(source, column, text.isna() | (text == ""), raw, "empty value", "a non-empty id")
    return text.astype("category").rename(column)


# The canonical clock is datetime64[ns]: 1677-09-21 .. 2262-04-11.
TIME_MIN = pd.Timestamp.min.tz_localize("UTC")
TIME_MAX = pd.Timestamp.max.tz_localize("UTC")


def parse_timestamps(raw: pd.Series, source: str, column: str, *, required: bool) -> pd.Series:
    """Parse to UTC. Text: ISO 8601 (naive = UTC). Numbers: Unix seconds. Times outside the
    nanosecond clock (before 1677 or after 2262) are fatal, named like any bad value."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        parsed = _unix_seconds(pd.to_numeric(raw, errors="coerce"))
    else:
        text = raw.astype("string").str.strip()
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        if parsed.isna().any():   # ISO 8601 outside the ns clock: parse it at us resolution
            wide = pd.Series([_iso_us(v) for v in text.where(parsed.isna())], index=raw.index,
                             dtype="datetime64[us, UTC]")
            parsed = parsed.astype("datetime64[us, UTC]").fillna(wide)
        # a column of bare integers in a CSV is Unix seconds
        numeric = pd.to_numeric(text, errors="coerce")
        if parsed.isna().any() and numeric.notna().any():
            parsed = parsed.fillna(_unix_seconds(numeric))
    missing = raw.isna().to_numpy()
    if required:
        _fail(source, column, missing, raw, "empty value", "an ISO 8601 timestamp")
    _fail(source, column, parsed.isna().to_numpy() & ~missing, raw, "unparsable timestamp",
          "ISO 8601 like 2011-12-09T12:50:00Z, or Unix seconds")
    wide = parsed.astype("datetime64[us, UTC]")
    _fail(source, column, ((wide < TIME_MIN) | (wide > TIME_MAX)).to_numpy(), raw,
          "timestamp out of range", "a time between 1677-09-22 and 2262-04-11")
    return parsed.astype("datetime64[ns, UTC]").rename(column)


def _unix_seconds(seconds: pd.Series) -> pd.Series:
    """Unix seconds -> UTC times at us resolution; NaN where not finite or beyond year 9999."""
    ok = seconds.notna() & np.isfinite(seconds) & (seconds.abs() < 2.5e11)
    micros = (seconds.where(ok, 0) * 1e6).round().astype("int64")
    return pd.Series(micros.to_numpy().astype("datetime64[us]"), index=seconds.index).dt \
        .tz_localize("UTC").where(ok)


def _iso_us(value: object) -> pd.Timestamp | None:
    """An ISO 8601 date(-time) at microsecond resolution (years 1..9999), else None."""
    if not isinstance(value, str) or not re.match(r"-?\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        ts = pd.Timestamp(np.datetime64(str(value).replace("Z", "").split("+")[0], "us"))
    except (ValueError, TypeError, OverflowError):
        return None
    return ts.tz_localize("UTC")


def _vocabulary(raw: pd.Series, allowed: tuple[str, ...], source: str, column: str,
                *, required: bool) -> pd.Series:
    text = raw.astype("string")
    missing = text.isna().to_numpy()
    if required:
        _fail(source, column, missing, raw, "empty value", f"one of {', '.join(allowed)}")
    _fail(source, column, ~text.isin(allowed).to_numpy() & ~missing, raw, "unknown value",
          f"one of {', '.join(allowed)}")
    return pd.Series(pd.Categorical(text, categories=list(allowed)), index=raw.index, name=column)


def _numbers(raw: pd.Series, source: str, column: str, *, minimum: float,
             integer: bool, maximum: float | None = None) -> pd.Series:
    values = pd.to_numeric(raw, errors="coerce")
    if pd.api.types.is_bool_dtype(raw.dtype):
        values = pd.Series(np.nan, index=raw.index)    # true/false is not a number
    missing = raw.isna().to_numpy()
    what = "an integer" if integer else "a number"
    expected = (f"{what} >= {minimum:g}" if maximum is None
                else f"{what} in {minimum:g}..{maximum:,.0f}")
    _fail(source, column, values.isna().to_numpy() & ~missing, raw, "not a number", expected)
    values = values.astype("float64")
    _fail(source, column, np.isinf(values.to_numpy()), raw, "not a finite number", expected)
    _fail(source, column, (values < minimum).fillna(False).to_numpy(), raw,
          "negative value" if minimum == 0 else "value below minimum", expected)
    if maximum is not None:
        _fail(source, column, (values > maximum).fillna(False).to_numpy(), raw,
              "value too large", expected)
    if integer:
        _fail(source, column, (values.notna() & (values != np.floor(values))).to_numpy(), raw,
              "non-integer value", expected)
    return values.rename(column)


def validate_items(table: RawTable | pd.DataFrame, source: str = "items") -> pd.DataFrame:
    """Validate a raw catalog and return it in canonical form (fatal problems raise)."""
    if isinstance(table, RawTable):
        frame, source = table.frame, table.path.name
    else:
        frame = table
    with _no_traceback(source):
        return _validate_items(frame, source)


def _validate_items(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    _check_cells(frame, source)
    _require(frame, C.ITEM_REQUIRED, source)
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    out[C.ITEM_ID] = _ids(frame, C.ITEM_ID, source).astype(str)
    dup = out[C.ITEM_ID].duplicated(keep="first").to_numpy()
    _fail(source, C.ITEM_ID, dup, out[C.ITEM_ID], "duplicate item_id", "unique item ids")
    # optional attributes with their defaults (counted in the report when applied): a missing
    # title is the id (reasons still name the item), a missing category "unknown", a missing
    # price unknown (NaN: price filters leave such items out, price features are missing)
    for col, default in ((C.TITLE, out[C.ITEM_ID]),
                         (C.CATEGORY, pd.Series(C.UNKNOWN_CATEGORY, index=frame.index))):
        text = (frame[col].astype("string").str.strip() if col in frame
                else pd.Series(pd.NA, index=frame.index, dtype="string"))
        out[col] = text.mask(text.isna() | (text == ""), default).astype(str)
    brand = frame[C.BRAND] if C.BRAND in frame else pd.Series(pd.NA, index=frame.index)
    out[C.BRAND] = brand.astype("string").str.strip().replace("", pd.NA)
    out[C.PRICE] = (_numbers(frame[C.PRICE], source, C.PRICE, minimum=0, integer=False)
                    if C.PRICE in frame else pd.Series(np.nan, index=frame.index))
    desc = frame[C.DESCRIPTION] if C.DESCRIPTION in frame else pd.Series("", index=frame.index)
    out[C.DESCRIPTION] = desc.astype("string").fillna("").astype(str)
    out[C.IN_STOCK] = _booleans(frame, source)
    if C.FIRST_SEEN in frame:
        out[C.FIRST_SEEN] = parse_timestamps(frame[C.FIRST_SEEN], source, C.FIRST_SEEN,
                                             required=False)
    else:
        out[C.FIRST_SEEN] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return out


def _booleans(frame: pd.DataFrame, source: str) -> pd.Series:
    if C.IN_STOCK not in frame:
        return pd.Series(True, index=frame.index, name=C.IN_STOCK)
    raw = frame[C.IN_STOCK]
    if pd.api.types.is_bool_dtype(raw.dtype) and not raw.isna().any():
        return raw.astype(bool)
    text = raw.astype("string").str.strip().str.lower()
    known = text.isin(TRUE_WORDS | FALSE_WORDS) | text.isna()
    _fail(source, C.IN_STOCK, ~known.to_numpy(), raw, "not a boolean",
          "true/false (empty = true)")
    return (~text.isin(FALSE_WORDS)).fillna(True).astype(bool).rename(C.IN_STOCK)


def validate_events(table: RawTable | pd.DataFrame, items: pd.DataFrame | None = None, *,
                    source: str = "events", now: pd.Timestamp | None = None,
                    report: ValidationReport | None = None) -> tuple[pd.DataFrame,
                                                                     ValidationReport]:
    """Validate raw events (fatal problems raise) and drop unusable rows, counted by reason.

    ``items``, when given, is the validated catalog: events for other items are dropped.
    ``now`` (default: the current time) bounds timestamps; later events are dropped.
    """
    if isinstance(table, RawTable):
        frame, source = table.frame, table.path.name
    else:
        frame = table
    with _no_traceback(source):
        return _validate_events(frame, items, source, now, report or ValidationReport())


def _validate_events(frame: pd.DataFrame, items: pd.DataFrame | None, source: str,
                     now: pd.Timestamp | None, report: ValidationReport
                     ) -> tuple[pd.DataFrame, ValidationReport]:
    _check_cells(frame, source)
    _require(frame, C.EVENT_REQUIRED, source)
    frame = frame.reset_index(drop=True)
    report.events_in = len(frame)
    out = pd.DataFrame({
        C.USER_ID: _ids(frame, C.USER_ID, source),
        C.ITEM_ID: _ids(frame, C.ITEM_ID, source),
        C.TIMESTAMP: parse_timestamps(frame[C.TIMESTAMP], source, C.TIMESTAMP, required=True),
        C.EVENT_TYPE: _vocabulary(frame[C.EVENT_TYPE], C.EVENT_TYPES, source, C.EVENT_TYPE,
                                  required=True),
    })
    if C.QUANTITY in frame:
        qty = _numbers(frame[C.QUANTITY], source, C.QUANTITY, minimum=1, integer=True,
                       maximum=MAX_QUANTITY)
        n_default = int(qty.isna().sum())
        out[C.QUANTITY] = qty.fillna(1).astype("int32")
    else:
        n_default = len(frame)
        out[C.QUANTITY] = np.ones(len(frame), dtype="int32")
    if n_default:
        report.defaults_applied["quantity missing -> 1"] = n_default
    out[C.PRICE] = (_numbers(frame[C.PRICE], source, C.PRICE, minimum=0, integer=False)
                    if C.PRICE in frame else np.full(len(frame), np.nan))
    if C.SESSION_ID in frame:
        out[C.SESSION_ID] = frame[C.SESSION_ID].astype("string").astype("category")
    else:
        out[C.SESSION_ID] = pd.Categorical([pd.NA] * len(frame))
    out[C.DEVICE] = (_vocabulary(frame[C.DEVICE], C.DEVICES, source, C.DEVICE, required=False)
                     if C.DEVICE in frame
                     else pd.Categorical([None] * len(frame), categories=list(C.DEVICES)))

    keep = np.ones(len(out), dtype=bool)
    dup = out.duplicated(keep="first").to_numpy()
    _drop(report, "exact duplicate event", dup & keep, out, keep)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    future = (out[C.TIMESTAMP] > now).to_numpy()
    _drop(report, f"timestamp in the future (after {now.isoformat()})", future & keep, out, keep)
    if items is not None:
        known = out[C.ITEM_ID].cat.categories.isin(items[C.ITEM_ID])
        codes = out[C.ITEM_ID].cat.codes.to_numpy()
        unknown = ~known[codes]
        _drop(report, "item_id not in the catalog", unknown & keep, out, keep)
    if not keep.all():
        out = out.loc[keep].reset_index(drop=True)
    for col in (C.USER_ID, C.ITEM_ID, C.SESSION_ID):
        out[col] = out[col].cat.remove_unused_categories()
    report.events_out = len(out)
    if len(out) == 0:
        raise DataError(f"{source}: every event was dropped ({report.dropped}); nothing to use")
    return out, report


def _drop(report: ValidationReport, reason: str, mask: np.ndarray, frame: pd.DataFrame,
          keep: np.ndarray) -> None:
    n = int(mask.sum())
    if n == 0:
        return
    pos = int(np.flatnonzero(mask)[0])
    row = frame.iloc[pos]
    report.dropped[reason] = n
    report.examples[reason] = (f"row {pos + 1}: user_id={row[C.USER_ID]!s} "
                               f"item_id={row[C.ITEM_ID]!s} timestamp={row[C.TIMESTAMP]}")
    keep &= ~mask


def validate(directory: str | Path, *, now: pd.Timestamp | None = None) -> Dataset:
    """Read and validate a dataset directory. Raises DataError on fatal problems."""
    raw_events, raw_items = read_raw(directory)
    items = validate_items(raw_items)
    events, report = validate_events(raw_events, items, now=now)
    report.items = len(items)
    return Dataset(events, items, report)


def load_dataset(directory: str | Path, *, now: pd.Timestamp | None = None) -> Dataset:
    """Alias of :func:`validate`: every load goes through validation, so no code sees raw data."""
    return validate(directory, now=now)
