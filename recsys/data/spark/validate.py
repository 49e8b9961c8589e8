"""Validate an events table on Spark with the rules and report of :mod:`recsys.data.validate`.

Same contract, same order of checks, same messages: a fatal problem raises a
:class:`~recsys.errors.DataError` naming the file, the column, the first bad row (1 = first data
row), the value and how many rows are affected; exact duplicates, future timestamps and unknown
items are dropped and counted in a :class:`~recsys.data.validate.ValidationReport` with the same
reasons and examples. The catalog is validated by the pandas code itself: models need the whole
item table on one machine anyway, so it is never larger than what pandas holds.

Passes over the raw file: one, which parses it into Parquet under the scratch directory
(canonical columns, the catalog's ``item_idx``, a bit per failed fatal check). The checks, the
duplicate search (by hash, then exact among repeated hashes) and the drop counts read back only
the columns they need, and so do the aggregates afterwards.
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
    from pyspark.sql import DataFrame, SparkSession

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

    def between(self, start: pd.Timestamp | None = None,
                end: pd.Timestamp | None = None) -> SparkEvents:
        """Events with ``start <= timestamp < end`` (either bound optional), e.g. a train split."""
        from pyspark.sql import functions as F

        frame = self.frame
        if start is not None:
            frame = frame.filter(F.unix_micros(C.TIMESTAMP) >= utc_micros(start))
        if end is not None:
            frame = frame.filter(F.unix_micros(C.TIMESTAMP) < utc_micros(end))
        return SparkEvents(frame, self.items, self.item_map, self.report, self.scratch)


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


def _example(frame: DataFrame, pos: int) -> str:
    from pyspark.sql import functions as F

    row = (frame.filter(F.col(ROW) == pos)
           .select(C.USER_ID, C.ITEM_ID, F.unix_micros(C.TIMESTAMP).alias("t")).first())
    assert row is not None
    return (f"row {pos + 1}: user_id={row[C.USER_ID]!s} item_id={row[C.ITEM_ID]!s} "
            f"timestamp={_timestamp_text(int(row['t']))}")


def _duplicates(parsed: DataFrame) -> DataFrame:
    """``_row`` of every row that repeats an earlier one (all event columns equal).

    Rows are grouped by a 64-bit hash first, a shuffle of 16 bytes per row; only rows whose
    hash repeats (the duplicates, and the rare hash collision) are then compared column by
    column, in file order.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # hashed here rather than stored: 8 incompressible bytes per row cost more to write to
    # the scratch Parquet than the columns cost to read back
    hashed = parsed.withColumn("_h", F.xxhash64(*C.EVENT_COLUMNS))
    repeated = (hashed.groupBy("_h").agg(F.count(F.lit(1)).alias("_n"))
                .filter(F.col("_n") > 1).select("_h"))
    candidates = hashed.join(repeated, "_h", "left_semi")
    order = Window.partitionBy(*C.EVENT_COLUMNS).orderBy(ROW)
    return (candidates.withColumn("_k", F.row_number().over(order))
            .filter(F.col("_k") > 1).select(ROW))


def validate_events(spark: SparkSession, directory: str | Path, scratch: str | Path, *,
                    now: pd.Timestamp | None = None) -> SparkEvents:
    """Validate ``directory``'s events (and catalog); keep the valid events under ``scratch``.

    The raw file is parsed once, into Parquet under ``scratch``; see the module docstring.
    """
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
    parsed = canonical_events(raw.frame, raw.nanos_columns)
    checks = parsed.checks
    catalog = from_arrow(spark, pa.table({
        "_item": pa.array(item_map.external_ids.astype(str)),
        ITEM_IDX: pa.array(np.arange(len(item_map), dtype=np.int32))}))
    # one int per row, bit i set when check i fails (cheaper to write than a column per check)
    bad = sum((F.when(c.flag, 1 << i).otherwise(0) for i, c in enumerate(checks)), F.lit(0))
    table = (raw.frame.select(*parsed.columns, ROW, parsed.defaulted.alias("_default"),
                              bad.alias("_bad"))
             .withColumn("_future", F.unix_micros(C.TIMESTAMP) > utc_micros(now))
             .join(F.broadcast(catalog), F.col(C.ITEM_ID) == F.col("_item"), "left")
             .drop("_item"))
    path = str(Path(scratch) / "events_parsed.parquet")
    table.write.mode("overwrite").parquet(path)
    table = spark.read.parquet(path)

    aggs = [F.count(F.lit(1)).alias("n"), F.sum(F.col("_default").cast("long")).alias("dflt")]
    for i in range(len(checks)):
        flag = (F.col("_bad").bitwiseAND(1 << i)) != 0
        aggs += [F.sum(flag.cast("long")).alias(f"n{i}"),
                 F.min(F.when(flag, F.col(ROW))).alias(f"r{i}")]
    stats = table.agg(*aggs).first()
    assert stats is not None
    stats_d = stats.asDict()
    if int(stats_d["n"]) == 0:
        raise DataError(f"{source}: no data rows (expected at least one row after the header)")
    _raise_first(raw.frame, checks, stats_d, source)

    report = ValidationReport(events_in=int(stats_d["n"]), items=len(items))
    if stats_d["dflt"]:
        report.defaults_applied["quantity missing -> 1"] = int(stats_d["dflt"])
    dup_path = str(Path(scratch) / "duplicates.parquet")
    _duplicates(table).write.mode("overwrite").parquet(dup_path)
    dups = spark.read.parquet(dup_path)
    dup = dups.agg(F.count(F.lit(1)), F.min(ROW)).first()
    assert dup is not None
    if dup[0]:
        table = table.join(F.broadcast(dups), ROW, "left_anti")
    unknown = ~F.col("_future") & F.col(ITEM_IDX).isNull()
    counts = table.agg(
        F.sum(F.col("_future").cast("long")).alias("future"),
        F.min(F.when(F.col("_future"), F.col(ROW))).alias("future_row"),
        F.sum(unknown.cast("long")).alias("unknown"),
        F.min(F.when(unknown, F.col(ROW))).alias("unknown_row"),
    ).first()
    assert counts is not None
    drops = [(DUPLICATE, int(dup[0]), dup[1]),
             (f"timestamp in the future (after {now.isoformat()})", int(counts["future"] or 0),
              counts["future_row"]),
             (UNKNOWN_ITEM, int(counts["unknown"] or 0), counts["unknown_row"])]
    examples = spark.read.parquet(path)
    for reason, n, pos in drops:
        if n:
            report.dropped[reason] = n
            report.examples[reason] = _example(examples, int(pos))
    kept = table.filter(~F.col("_future") & F.col(ITEM_IDX).isNotNull()).select(
        *C.EVENT_COLUMNS, ROW, ITEM_IDX)
    report.events_out = report.events_in - sum(n for _, n, _ in drops)
    if report.events_out == 0:
        raise DataError(f"{source}: every event was dropped ({report.dropped}); nothing to use")
    return SparkEvents(kept, items, item_map, report, str(scratch))
