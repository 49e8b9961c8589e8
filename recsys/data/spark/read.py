"""Read a raw events table into Spark, each row tagged with its position in the file.

Validation errors name "row N" as the pandas path does (row 1 = the first data row), and
"first" (the duplicate kept, the example given, the basket items kept) means file order, so
every row carries ``_row``: its 0-based position in the table as pandas reads it.

* Parquet: Spark's ``_metadata.row_index`` (position in its file) plus the rows of the files
  before it (a directory of part files is read in sorted name order, as pyarrow does); the
  counts come from the files' footers, read on the driver.
* CSV: no row index exists, so one counting pass finds, per file block Spark reads, how many
  rows it holds; a row's position is the rows of earlier blocks plus its place in its block.

The file's own column types are kept (all strings for CSV, as pandas reads it). Parquet
nanosecond timestamps arrive as longs (see :mod:`.session`); ``nanos_columns`` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

ROW = "_row"


@dataclass(frozen=True)
class RawEvents:
    frame: DataFrame            # the file's columns plus ``_row`` (long)
    source: str                 # the name errors use, e.g. "events.csv"
    nanos_columns: frozenset[str]


def parquet_files(path: Path) -> list[Path]:
    """The data files of a Parquet table (a file, or a directory of part files) in read order."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not p.name.startswith(("_", ".")) and p.suffix != ".crc")
    if not files:
        raise DataError(f"{path.name}: directory holds no Parquet files")
    return files


def _by_file(names: list[str], values: list[int], key: Column) -> Column:
    """``values[i]`` for the row whose ``key`` equals ``names[i]`` (a literal map lookup)."""
    from pyspark.sql import functions as F

    pairs = [x for n, v in zip(names, values, strict=True) for x in (F.lit(n), F.lit(v))]
    return F.create_map(*pairs)[key]


def read_parquet(spark: SparkSession, path: Path) -> RawEvents:
    from pyspark.sql import functions as F

    files = parquet_files(path)
    try:
        schema = pq.read_schema(files[0])
        counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path.name}: cannot be read as parquet: {exc}") from exc
    offsets = [sum(counts[:i]) for i in range(len(files))]
    nanos = frozenset(f.name for f in schema if pa.types.is_timestamp(f.type)
                      and f.type.unit == "ns")
    frame = spark.read.parquet(str(path))
    names = [str(f.relative_to(path)) if path.is_dir() else f.name for f in files]
    if path.is_dir():
        # _metadata.file_path is a URI; its tail below the table directory is the name above
        base = path.resolve().as_uri().rstrip("/") + "/"
        key = F.expr(f"substring(_metadata.file_path, {len(base) + 1})")
    else:
        key = F.col("_metadata.file_name")
    row = F.col("_metadata.row_index") + _by_file(names, offsets, key)
    return RawEvents(frame.select("*", row.cast("long").alias(ROW)), path.name, nanos)


def read_csv(spark: SparkSession, path: Path) -> RawEvents:
    """All columns as text; an empty field is missing (pandas: ``na_values=[""]``)."""
    from pyspark.sql import functions as F

    reader = (spark.read.option("header", True).option("inferSchema", False)
              .option("escape", '"').option("mode", "FAILFAST"))
    raw = reader.csv(str(path))
    located = raw.select(
        "*", F.col("_metadata.file_name").alias("_file"),
        F.input_file_block_start().alias("_block"),
        F.monotonically_increasing_id().alias("_mid"))
    blocks = (located.groupBy("_file", "_block")
              .agg(F.count(F.lit(1)).alias("n"), F.min("_mid").alias("first"))
              .orderBy("_file", "_block").collect())
    keys = [f"{b['_file']}#{b['_block']}" for b in blocks]
    before, seen = [], 0
    for b in blocks:
        before.append(seen - int(b["first"]))
        seen += int(b["n"])
    block_key = F.concat_ws("#", F.col("_file"), F.col("_block").cast("string"))
    row = F.col("_mid") + _by_file(keys, before, block_key) if keys else F.lit(0)
    cleaned = [F.when(F.col(c) == "", None).otherwise(F.col(c)).alias(c) for c in raw.columns]
    frame = located.select(*cleaned, row.cast("long").alias(ROW))
    return RawEvents(frame, path.name, frozenset())


def read_events(spark: SparkSession, path: Path) -> RawEvents:
    """The raw events table at ``path`` (from :func:`recsys.data.io.find_table`)."""
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path.name}: file is empty (expected a header row and data rows)")
    if path.name.endswith(".parquet"):
        return read_parquet(spark, path)
    return read_csv(spark, path)
