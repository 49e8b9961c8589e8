"""Spark expressions that turn raw event columns into canonical ones, and the fatal checks.

Each function mirrors its pandas twin in :mod:`recsys.data.validate` for the column types a
file can carry (Parquet: its own types; CSV: text), and returns the checks in the order the
pandas path runs them, so the first failing check is the same one.

Known differences, all on inputs the data contract does not promise to accept: ISO 8601 basic
format (``20111209T125000``) parses in pandas only; Spark keeps microseconds (pandas keeps
nanoseconds); whitespace is Unicode ``\\s`` plus the ASCII separators Python also strips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recsys import columns as C
from recsys.data.validate import MAX_QUANTITY

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

_STRIP = r"(?U)^[\s\x1c-\x1f]+|[\s\x1c-\x1f]+$"


@dataclass(frozen=True)
class Check:
    column: str
    flag: Column           # true on a bad row
    problem: str
    expected: str


@dataclass(frozen=True)
class Parsed:
    columns: list[Column]  # the canonical columns, named as in C.EVENT_COLUMNS
    checks: list[Check]    # fatal checks, in the pandas path's order
    defaulted: Column      # true where quantity was missing and became 1


def _kind(dtype: DataType) -> str:
    from pyspark.sql import types as T

    if isinstance(dtype, T.StringType):
        return "string"
    if isinstance(dtype, T.FloatType | T.DoubleType):
        return "float"
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType | T.DecimalType):
        return "integer"
    if isinstance(dtype, T.TimestampType):
        return "timestamp"
    if isinstance(dtype, T.TimestampNTZType | T.DateType):
        return "local_time"
    return "other"


def _missing(col: Column, kind: str) -> Column:
    from pyspark.sql import functions as F

    return (col.isNull() | F.isnan(col)) if kind == "float" else col.isNull()


def _strip(text: Column) -> Column:
    """``text`` without leading and trailing whitespace. The regular expression is the costly
    part of parsing an id, so it only runs where the first or last character could be
    whitespace: printable ASCII (codes 33 to 126) never is, and most ids begin and end with it."""
    from pyspark.sql import functions as F

    plain = F.ascii(text).between(33, 126) & F.ascii(F.substring(text, -1, 1)).between(33, 126)
    return F.when(plain, text).otherwise(F.regexp_replace(text, _STRIP, ""))


def _ids(col: Column, kind: str, name: str) -> tuple[Column, list[Check]]:
    """Stripped text; ``17850.0`` from a float column becomes ``17850``; empty is fatal."""
    from pyspark.sql import functions as F

    if kind == "float":
        whole = ~F.isnan(col) & (col == F.floor(col))
        text = F.when(whole, col.cast("long").cast("string")).otherwise(col.cast("string"))
        text = F.when(F.isnan(col), None).otherwise(text)
    else:
        text = col.cast("string")
    value = _strip(text)
    bad = value.isNull() | (value == "")
    return value.alias(name), [Check(name, bad, "empty value", "a non-empty id")]


def _timestamps(col: Column, kind: str, name: str, nanos: bool) -> tuple[Column, list[Check]]:
    """UTC time. Text: ISO 8601 (naive = UTC), else Unix seconds. Numbers: Unix seconds."""
    from pyspark.sql import functions as F

    if kind == "timestamp":
        parsed = col
    elif kind == "local_time":
        parsed = col.cast("timestamp")      # the session zone is UTC: naive = UTC
    elif nanos:
        parsed = F.timestamp_micros(F.expr(f"`{name}` div 1000"))
    elif kind in ("integer", "float"):
        parsed = F.when(~_missing(col, kind), F.timestamp_seconds(col))
    else:
        text = _strip(col.cast("string"))
        parsed = F.coalesce(text.try_cast("timestamp"),
                            F.timestamp_seconds(text.try_cast("double")))
    missing = _missing(col, kind)
    checks = [Check(name, missing, "empty value", "an ISO 8601 timestamp"),
              Check(name, parsed.isNull() & ~missing, "unparsable timestamp",
                    "ISO 8601 like 2011-12-09T12:50:00Z, or Unix seconds")]
    return parsed.alias(name), checks


def _vocabulary(col: Column, allowed: tuple[str, ...], name: str,
                *, required: bool) -> tuple[Column, list[Check]]:
    text = col.cast("string")
    expected = f"one of {', '.join(allowed)}"
    checks = [Check(name, text.isNull(), "empty value", expected)] if required else []
    checks.append(Check(name, text.isNotNull() & ~text.isin(list(allowed)), "unknown value",
                        expected))
    return text.alias(name), checks


def _numbers(col: Column, kind: str, name: str, *, minimum: float,
             integer: bool, maximum: float | None = None) -> tuple[Column, list[Check]]:
    """A double (null when missing); not-a-number, infinite, below-minimum, above-maximum and
    non-integer are fatal (the pandas validator's checks, in its order)."""
    from pyspark.sql import functions as F

    missing = _missing(col, kind)
    cast = col.cast("double") if kind in ("float", "integer") else col.try_cast("double")
    value = F.when(~missing & ~F.isnan(cast), cast)
    what = "an integer" if integer else "a number"
    expected = (f"{what} >= {minimum:g}" if maximum is None
                else f"{what} in {minimum:g}..{maximum:,.0f}")
    infinite = F.coalesce(F.abs(value) == float("inf"), F.lit(False))
    checks = [Check(name, ~missing & value.isNull(), "not a number", expected),
              Check(name, infinite, "not a finite number", expected),
              Check(name, F.coalesce(value < minimum, F.lit(False)),
                    "negative value" if minimum == 0 else "value below minimum", expected)]
    if maximum is not None:
        checks.append(Check(name, F.coalesce(value > maximum, F.lit(False)), "value too large",
                            expected))
    if integer:
        checks.append(Check(name, F.coalesce(value != F.floor(value), F.lit(False)),
                            "non-integer value", expected))
    return value.alias(name), checks


def canonical_events(frame: DataFrame, nanos_columns: frozenset[str]) -> Parsed:
    """Canonical event columns of a raw table (required columns present; see validate)."""
    from pyspark.sql import functions as F

    kinds = {f.name: _kind(f.dataType) for f in frame.schema.fields}
    columns: list[Column] = []
    checks: list[Check] = []
    for name in (C.USER_ID, C.ITEM_ID):
        value, more = _ids(F.col(name), kinds[name], name)
        columns.append(value)
        checks += more
    value, more = _timestamps(F.col(C.TIMESTAMP), kinds[C.TIMESTAMP], C.TIMESTAMP,
                              C.TIMESTAMP in nanos_columns)
    columns.append(value)
    checks += more
    value, more = _vocabulary(F.col(C.EVENT_TYPE), C.EVENT_TYPES, C.EVENT_TYPE, required=True)
    columns.append(value)
    checks += more
    if C.QUANTITY in kinds:
        qty, more = _numbers(F.col(C.QUANTITY), kinds[C.QUANTITY], C.QUANTITY, minimum=1,
                             integer=True, maximum=MAX_QUANTITY)
        checks += more
        defaulted = _missing(F.col(C.QUANTITY), kinds[C.QUANTITY])
        columns.append(F.coalesce(qty, F.lit(1.0)).cast("int").alias(C.QUANTITY))
    else:
        defaulted = F.lit(True)
        columns.append(F.lit(1).alias(C.QUANTITY))
    if C.PRICE in kinds:
        price, more = _numbers(F.col(C.PRICE), kinds[C.PRICE], C.PRICE, minimum=0,
                               integer=False)
        checks += more
        columns.append(price)
    else:
        columns.append(F.lit(None).cast("double").alias(C.PRICE))
    if C.SESSION_ID in kinds:
        columns.append(F.col(C.SESSION_ID).cast("string").alias(C.SESSION_ID))
    else:
        columns.append(F.lit(None).cast("string").alias(C.SESSION_ID))
    if C.DEVICE in kinds:
        value, more = _vocabulary(F.col(C.DEVICE), C.DEVICES, C.DEVICE, required=False)
        columns.append(value)
        checks += more
    else:
        columns.append(F.lit(None).cast("string").alias(C.DEVICE))
    return Parsed(columns, checks, defaulted)
