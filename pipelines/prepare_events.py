"""``recsys prepare``: validate and aggregate a dataset on pandas or Spark, save the aggregates."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# the parser is built for every command: keep pandas and the engines out of this module's imports
ENGINES = ("pandas", "spark")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="dataset directory (events.* and items.*)")
    p.add_argument("--engine", choices=ENGINES, default="pandas",
                   help="pandas (one process) or spark (needs pip install -e '.[spark]' and "
                        "Java 17/21)")
    p.add_argument("--spark-master", default="local[2]",
                   help="Spark master URL (default local[2]; e.g. spark://host:7077)")
    p.add_argument("--driver-memory", default="4g", help="Spark driver heap (default 4g)")
    p.add_argument("--scratch", help="directory for Spark's intermediate files (default: the "
                                     "system temp directory; a shared path on a cluster)")
    p.add_argument("--until", help="aggregate events before this time only (ISO 8601), e.g. "
                                   "the validation split's start")
    p.add_argument("--now", help="drop events after this time (default: the current time)")
    p.add_argument("--out", help="directory to save the aggregates in (npz, Parquet, JSON)")


def _time(value: str | None, flag: str) -> pd.Timestamp | None:
    import pandas as pd

    from recsys.errors import ConfigError

    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: not a time (expected ISO 8601 like "
                          f"2024-02-01 or 2024-02-01T12:00:00Z)") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def prepare_command(args: argparse.Namespace) -> None:
    from recsys.data.prepare import prepare
    from recsys.data.spark.session import SparkSettings

    settings = SparkSettings(master=args.spark_master, driver_memory=args.driver_memory)
    prepared = prepare(args.directory, engine=args.engine, spark=settings, scratch=args.scratch,
                       end=_time(args.until, "--until"), now=_time(args.now, "--now"))
    for line in prepared.report.lines():
        print(line)
    m = prepared.matrix
    print(f"matrix: {m.shape[0]:,} users x {m.shape[1]:,} items, {m.nnz:,} nonzeros; "
          f"co-occurring pairs: {prepared.cooccurrence.pairs.nnz:,}; "
          f"reference time {prepared.reference_time}")
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in prepared.seconds.items())
    print(f"{prepared.engine}: {steps}")
    if args.out:
        print(f"aggregates -> {prepared.save(args.out)}")
