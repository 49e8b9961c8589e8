"""Read and write a dataset directory: ``events.{parquet,csv}`` and ``items.{parquet,csv}``.

Reading returns the raw frames; :mod:`recsys.data.validate` turns them into canonical ones.
Writing uses Parquet, which keeps dtypes (UTC timestamps, categoricals) exactly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.errors import DataError

SUFFIXES = (".parquet", ".csv", ".csv.gz")


@dataclass(frozen=True)
class RawTable:
    """A table as read from disk, with the file it came from (for error messages)."""

    frame: pd.DataFrame
    path: Path


def find_table(directory: str | Path, name: str) -> Path:
    """Return the path of ``name.parquet``/``name.csv``/``name.csv.gz`` in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected a dataset directory holding "
                        f"events.parquet|csv and items.parquet|csv)")
    found = [directory / f"{name}{s}" for s in SUFFIXES if (directory / f"{name}{s}").exists()]
    if not found:
        raise DataError(f"{directory}: no {name}.parquet or {name}.csv found")
    if len(found) > 1:
        raise DataError(f"{directory}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0]


def read_table(path: str | Path) -> RawTable:
    """Read one CSV or Parquet file without interpreting its values (all CSV columns as text)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path.name}: file is empty (expected a header row and data rows)")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, EOFError, zlib.error, pd.errors.ParserError) as exc:
        # EOFError / zlib.error: a truncated or corrupted .gz
        kind = "".join(path.suffixes).lstrip(".") or "a table"
        raise DataError(f"{path.name}: cannot be read as {kind}: {type(exc).__name__}: "
                        f"{exc}") from None
    return RawTable(frame, path)


def read_raw(directory: str | Path) -> tuple[RawTable, RawTable]:
    """Read ``events`` and ``items`` from a dataset directory, unvalidated."""
    return (read_table(find_table(directory, "events")),
            read_table(find_table(directory, "items")))


def write_dataset(directory: str | Path, events: pd.DataFrame, items: pd.DataFrame) -> Path:
    """Write canonical frames as ``events.parquet`` and ``items.parquet``; returns the directory.

    Any ``events.csv``/``items.csv`` already there is removed so the directory stays unambiguous.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in (("events", events), ("items", items)):
        for suffix in (".csv", ".csv.gz"):
            (directory / f"{name}{suffix}").unlink(missing_ok=True)
        frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory
