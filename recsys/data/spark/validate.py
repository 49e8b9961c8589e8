"""Validate an events table on Spark with the rules and report of :mod:`recsys.data.validate`.

Same contract, same order of checks, same messages: a fatal problem raises a
:class:`~recsys.errors.DataError` naming the file, the column, the first bad row (1 = first data
row), the value and how many rows are affected; exact duplicates, future timestamps and unknown
items are dropped and counted in a :class:`~recsys.data.validate.ValidationReport` with the same
reasons and examples. The catalog is validated by the pandas code itself: models need the whole
item table on one machine anyway, so it is never larger than what pandas holds.

Passes over the raw file: one, which parses it into Parquet under the scratch directory
(canonical columns, the catalog's ``item_idx``, the future flag and a 64-bit hash of the event
columns) and, while it writes, observes the fatal checks' counts and first rows, the drop counts
and examples and the last valid event's time. The duplicate search then reads the hashes alone,
and whole rows only where a hash repeats; the aggregates read only the columns they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys import columns as C
from recsys.data.idmap import IdMap
from recsys.data.io import find_table, read_table
from recsys.data.spark.parse import Check, canonical_events
from recsys.data.spark.read import ROW, read_events
from recsys.data.spark.session import from_arrow
from recsys.data.validate import ValidationReport, validate_items
from recsys.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession

ITEM_IDX = "item_idx"
DUPLICATE = "exact duplicate event"
UNKNOWN_ITEM = "item_id not in the catalog"


@dataclass(frozen=True)
class SparkEvents:
    """Validated events on Spark: the canonical columns, ``_row`` (position in the file) and
    ``item_idx`` (the catalog's internal id), plus the catalog and the report."""

    frame: DataFrame
    items: pd.DataFrame
    item_map: IdMap
    report: ValidationReport
    scratch: str             # a directory for intermediate Parquet (the caller removes it)
    # the last event's time when validation saw it (the window holds the last valid event)
    last_time: pd.Timestamp | None = None

    def between(self, start: pd.Timestamp | None = None,
                end: pd.Timestamp | None = None) -> SparkEvents:
        """Events with ``start <= timestamp < end`` (either bound optional), e.g. a train split."""
        from pyspark.sql import functions as F

        frame = self.frame
        if start is not None:
            frame = frame.filter(F.unix_micros(C.TIMESTAMP) >= utc_micros(start))
        if end is not None:
            frame = frame.filter(F.unix_micros(C.TIMESTAMP) < utc_micros(end))
        last = self.last_time
        if last is not None and ((start is not None and utc_micros(last) < utc_micros(start))
                                 or (end is not None and utc_micros(last) >= utc_micros(end))):
            last = None
        return SparkEvents(frame, self.items, self.item_map, self.report, self.scratch, last)


def utc_micros(ts: pd.Timestamp) -> int:
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1000)


def _timestamp_text(micros: int) -> str:
    return str(pd.Timestamp(micros, unit="us", tz="UTC"))


def _shown(value: object) -> str:
    """The value as the pandas path shows it: missing values are NaN there."""
    return repr(float("nan") if value is None else value)


def _raise_first(raw: DataFrame, checks: list[Check], stats: dict[str, int | None],
                 source: str) -> None:
    """Raise for the first failing check in the pandas path's order, if any."""
    from pyspark.sql import functions as F

    for i, check in enumerate(checks):
        n_bad = int(stats[f"n{i}"] or 0)
        if n_bad == 0:
            continue
        pos = int(stats[f"r{i}"] or 0)
        value = raw.filter(F.col(ROW) == pos).select(check.column).first()
        shown = _shown(value[0] if value is not None else None)
        raise DataError(f"{source}: column '{check.column}', row {pos + 1}: {check.problem} "
                        f"{shown} (expected {check.expected}; {n_bad:,} row(s) affected)")


def _first(flag: Column) -> Column:
    """The first row (in file order) where ``flag`` holds, as a struct that names it in a drop
    example: the minimum of structs that begin with ``_row``."""
    from pyspark.sql import functions as F

    return F.min(F.when(flag, F.struct(F.col(ROW), F.col(C.USER_ID), F.col(C.ITEM_ID),
                                       F.unix_micros(C.TIMESTAMP).alias("t"))))


def _example(first: Row) -> str:
    return (f"row {first[ROW] + 1}: user_id={first[C.USER_ID]!s} "
            f"item_id={first[C.ITEM_ID]!s} timestamp={_timestamp_text(int(first['t']))}")


def _repeated_hashes(parsed: DataFrame, scratch: Path) -> DataFrame | None:
    """The hashes (``_h``) that more than one row has, or None when every row's hash is unique
    (then no row repeats another). Reads 8 bytes per row."""
    from pyspark.sql import functions as F

    path = str(scratch / "repeated_hashes.parquet")
    # shuffled by hash before grouping: a partial aggregation before the shuffle would find
    # nearly every hash unique and only add work (10M events, hashing included: 18-19 s of CPU
    # against 26-34 s)
    (parsed.select("_h").repartition("_h").groupBy("_h").agg(F.count(F.lit(1)).alias("_n"))
     .filter(F.col("_n") > 1).select("_h").write.mode("overwrite").parquet(path))
    repeated = parsed.sparkSession.read.parquet(path)
    return None if repeated.isEmpty() else repeated


def _duplicates(parsed: DataFrame, repeated: DataFrame, scratch: Path) -> DataFrame:
    """``_row``, ``_future`` and ``item_idx`` (and the example's columns) of every row that
    repeats an earlier one: the rows whose hash repeats (the duplicates, and the rare hash
    collision) are compared column by column, in file order."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    candidates = parsed.join(repeated, "_h", "left_semi")
    order = Window.partitionBy(*C.EVENT_COLUMNS).orderBy(ROW)
    path = str(scratch / "duplicates.parquet")
    (candidates.withColumn("_k", F.row_number().over(order)).filter(F.col("_k") > 1)
     .select(ROW, C.USER_ID, C.ITEM_ID, C.TIMESTAMP, "_future", ITEM_IDX)
     .write.mode("overwrite").parquet(path))
    return parsed.sparkSession.read.parquet(path)


def validate_events(spark: SparkSession, directory: str | Path, scratch: str | Path, *,
                    now: pd.Timestamp | None = None) -> SparkEvents:
    """Validate ``directory``'s events (and catalog); keep the valid events under ``scratch``.

    The raw file is parsed once, into Parquet under ``scratch``; see the module docstring.
    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    items = validate_items(read_table(find_table(directory, "items")))
    item_map = IdMap(items[C.ITEM_ID].astype(str).to_numpy())
    raw = read_events(spark, find_table(directory, "events"))
    source = raw.source
    columns = [c for c in raw.frame.columns if c != ROW]
    missing = [c for c in C.EVENT_REQUIRED if c not in columns]
    if missing:
        raise DataError(f"{source}: missing required column(s) {missing} (found {columns})")
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    if raw.frame.isEmpty():         # (nothing to observe below: no metrics without a row)
        raise DataError(f"{source}: no data rows (expected at least one row after the header)")
    parsed = canonical_events(raw.frame, raw.nanos_columns)
    checks = parsed.checks
    catalog = from_arrow(spark, pa.table({
        "_item": pa.array(item_map.external_ids.astype(str)),
        ITEM_IDX: pa.array(np.arange(len(item_map), dtype=np.int32))}))
    # one int per row, bit i set when check i fails
    bad = sum((F.when(c.flag, 1 << i).otherwise(0) for i, c in enumerate(checks)), F.lit(0))
    table = (raw.frame.select(*parsed.columns, ROW, parsed.defaulted.alias("_default"),
                              bad.alias("_bad"))
             .withColumn("_future", F.unix_micros(C.TIMESTAMP) > utc_micros(now))
             .join(F.broadcast(catalog), F.col(C.ITEM_ID) == F.col("_item"), "left")
             .drop("_item")
             .withColumn("_h", F.xxhash64(*C.EVENT_COLUMNS)))
    # the counts, first rows and examples are observed while the parsed rows are written: one
    # pass over the raw file for all of them
    unknown = ~F.col("_future") & F.col(ITEM_IDX).isNull()
    kept = ~F.col("_future") & F.col(ITEM_IDX).isNotNull()
    aggs = [F.count(F.lit(1)).alias("n"), F.sum(F.col("_default").cast("long")).alias("dflt"),
            F.sum(F.col("_future").cast("long")).alias("future"),
            _first(F.col("_future")).alias("future_first"),
            F.sum(unknown.cast("long")).alias("unknown"), _first(unknown).alias("unknown_first"),
            F.max(F.when(kept, F.unix_micros(C.TIMESTAMP))).alias("last")]
    for i in range(len(checks)):
        flag = (F.col("_bad").bitwiseAND(1 << i)) != 0
        aggs += [F.sum(flag.cast("long")).alias(f"n{i}"),
                 F.min(F.when(flag, F.col(ROW))).alias(f"r{i}")]
    observed = Observation("validation")
    path = str(Path(scratch) / "events_parsed.parquet")
    (table.observe(observed, *aggs).drop("_default", "_bad")
     .write.mode("overwrite").parquet(path))
    stats = observed.get
    _raise_first(raw.frame, checks, stats, source)

    report = ValidationReport(events_in=int(stats["n"]), items=len(items))
    if stats["dflt"]:
        report.defaults_applied["quantity missing -> 1"] = int(stats["dflt"])
    table = spark.read.parquet(path)
    repeated = _repeated_hashes(table, Path(scratch))
    dups = None if repeated is None else _duplicates(table, repeated, Path(scratch))
    # a duplicate repeats an earlier row with the same flags: the first future or unknown row
    # is never a duplicate, and only the counts lose the duplicates
    n_dup, dup_first, dup_future, dup_unknown = 0, None, 0, 0
    if dups is not None:
        dup = dups.agg(F.count(F.lit(1)), _first(F.lit(True)),
                       F.sum(F.col("_future").cast("long")), F.sum(unknown.cast("long"))).first()
        assert dup is not None
        n_dup, dup_first, dup_future, dup_unknown = dup[0], dup[1], dup[2] or 0, dup[3] or 0
        table = table.join(F.broadcast(dups.select(ROW)), ROW, "left_anti")
    drops = [(DUPLICATE, int(n_dup), dup_first),
             (f"timestamp in the future (after {now.isoformat()})",
              int(stats["future"] or 0) - int(dup_future), stats["future_first"]),
             (UNKNOWN_ITEM, int(stats["unknown"] or 0) - int(dup_unknown),
              stats["unknown_first"])]
    for reason, n, first in drops:
        if n:
            report.dropped[reason] = n
            report.examples[reason] = _example(first)
    frame = table.filter(kept).select(*C.EVENT_COLUMNS, ROW, ITEM_IDX)
    report.events_out = report.events_in - sum(n for _, n, _ in drops)
    if report.events_out == 0:
        raise DataError(f"{source}: every event was dropped ({report.dropped}); nothing to use")
    last = pd.Timestamp(int(stats["last"]), unit="us", tz="UTC")
    return SparkEvents(frame, items, item_map, report, str(scratch), last)
