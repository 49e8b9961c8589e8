"""Event preparation, on pandas or Spark: dataset directory -> the aggregates models fit from.

The boundary this module draws: *preparation* (validate, deduplicate, weight, aggregate) depends
on the engine; *model fitting* runs on one machine from a :class:`Prepared` (the matrix, item
sums, buyers, co-occurrence counts, the id maps and the validation report), whichever engine
made it. Both engines give the same :class:`Prepared` for the same data (tests compare them).

>>> p = prepare("data/shop", engine="spark", end=valid_start)  # doctest: +SKIP
>>> p.matrix.shape == (len(p.user_map), len(p.item_map))  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from pydantic import Field

from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.data import aggregates as pandas_agg
from recsys.data.aggregates import CoCounts, ItemSums
from recsys.data.idmap import IdMap
from recsys.data.interactions import InteractionConfig
from recsys.data.spark.read import ROW
from recsys.data.spark.session import SparkSettings
from recsys.data.validate import Dataset, ValidationReport, load_dataset
from recsys.errors import ConfigError, DataError

Engine = Literal["pandas", "spark"]
ENGINES: tuple[str, ...] = ("pandas", "spark")


class PrepareConfig(StrictModel):
    """What to aggregate; the defaults are those of the train pipeline's models."""

    interactions: InteractionConfig = Field(
        default_factory=lambda: InteractionConfig.model_validate({}))
    # trailing windows for item sums (ItemStats and popularity use 7 and 14 days)
    item_windows_days: tuple[float, ...] = (7.0, 14.0)
    buyer_event_types: tuple[str, ...] = (C.PURCHASE,)
    basket_event_types: tuple[str, ...] = (C.ADD_TO_CART, C.PURCHASE)
    max_basket: int = Field(100, ge=2)

    def model_post_init(self, __context: object) -> None:
        for key in ("buyer_event_types", "basket_event_types"):
            bad = [t for t in getattr(self, key) if t not in C.EVENT_TYPES]
            if bad:
                raise ConfigError(f"prepare.{key}: unknown event type(s) {bad} "
                                  f"(expected {', '.join(C.EVENT_TYPES)})")


@dataclass(frozen=True)
class Prepared:
    """Everything model fitting needs from the event log, engine-independent."""

    engine: str
    report: ValidationReport
    items: pd.DataFrame           # the validated catalog (internal-id order)
    item_map: IdMap
    user_map: IdMap               # users with an event in the window
    reference_time: pd.Timestamp  # ages are measured back from here: the window's last event
    matrix: sp.csr_matrix         # users x items float32
    item_sums: ItemSums
    buyers: np.ndarray            # distinct users per item with an event of buyer_event_types
    cooccurrence: CoCounts
    seconds: dict[str, float] = field(default_factory=dict, compare=False)

    def save(self, directory: str | Path) -> Path:
        """Write the aggregates as npz/Parquet/JSON (no pickle): the hand-over from a
        preparation machine to the one that fits models."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        ids = {**self.user_map.to_arrays("user"), **self.item_map.to_arrays("item")}
        np.savez(out / "ids.npz", allow_pickle=False, **ids)
        sp.save_npz(out / "matrix.npz", self.matrix)
        sp.save_npz(out / "cooccurrence.npz", self.cooccurrence.pairs)
        arrays = {"total": self.item_sums.total, "buyers": self.buyers,
                  "baskets": self.cooccurrence.baskets,
                  **{f"last_{d:g}d": v for d, v in self.item_sums.last_days.items()}}
        np.savez(out / "item_arrays.npz", allow_pickle=False, **arrays)
        self.items.to_parquet(out / "items.parquet", index=False)
        self.report.save(out / "validation.json")
        info = {"engine": self.engine, "reference_time": self.reference_time.isoformat(),
                "last_days": list(self.item_sums.last_days), "seconds": self.seconds,
                "users": len(self.user_map), "items": len(self.item_map),
                "matrix_nnz": int(self.matrix.nnz)}
        (out / "prepared.json").write_text(json.dumps(info, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Prepared:
        src = Path(directory)
        info = json.loads((src / "prepared.json").read_text())
        with np.load(src / "ids.npz", allow_pickle=False) as ids:
            users, items = IdMap.from_arrays(ids, "user"), IdMap.from_arrays(ids, "item")
        with np.load(src / "item_arrays.npz", allow_pickle=False) as z:
            sums = ItemSums(z["total"], {float(d): z[f"last_{float(d):g}d"]
                                         for d in info["last_days"]})
            buyers, baskets = z["buyers"], z["baskets"]
        report = ValidationReport(**json.loads((src / "validation.json").read_text()))
        return cls(info["engine"], report, pd.read_parquet(src / "items.parquet"), items, users,
                   pd.Timestamp(info["reference_time"]), sp.load_npz(src / "matrix.npz").tocsr(),
                   sums, buyers, CoCounts(sp.load_npz(src / "cooccurrence.npz").tocsr(), baskets),
                   info["seconds"])


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 2)
        self._t = now


def _window(events: pd.DataFrame, start: pd.Timestamp | None,
            end: pd.Timestamp | None) -> pd.DataFrame:
    ts = events[C.TIMESTAMP]
    keep = np.ones(len(events), dtype=bool)
    if start is not None:
        keep &= (ts >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (ts < pd.Timestamp(end)).to_numpy()
    return events if keep.all() else events.loc[keep].reset_index(drop=True)


def _prepare_pandas(directory: str | Path, config: PrepareConfig, start: pd.Timestamp | None,
                    end: pd.Timestamp | None, now: pd.Timestamp | None) -> Prepared:
    clock = _Clock()
    dataset = load_dataset(directory, now=now)
    clock.lap("validate")
    events = _window(dataset.events, start, end)
    if len(events) == 0:
        raise DataError(f"{directory}: no valid event in the window [{start}, {end})")
    items = IdMap(dataset.items[C.ITEM_ID].astype(str).to_numpy())
    users = pandas_agg.user_map(events)
    ref = pandas_agg.last_event_time(events)
    matrix = pandas_agg.interaction_triples(events, users, items, config.interactions,
                                            ref).to_csr(len(users), len(items))
    clock.lap("matrix")
    sums = pandas_agg.item_weight_sums(events, items, config.interactions, ref,
                                       config.item_windows_days)
    buyers = pandas_agg.distinct_users(events, items, config.buyer_event_types)
    clock.lap("item_stats")
    co = pandas_agg.cooccurrence_counts(events, items, config.basket_event_types,
                                        config.max_basket)
    clock.lap("cooccurrence")
    return Prepared("pandas", dataset.report, dataset.items, items, users, ref, matrix, sums,
                    buyers, co, clock.seconds)


@contextmanager
def _scratch(base: str | Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="recsys-spark-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _prepare_spark(directory: str | Path, config: PrepareConfig, start: pd.Timestamp | None,
                   end: pd.Timestamp | None, now: pd.Timestamp | None,
                   settings: SparkSettings | None, scratch: str | Path | None) -> Prepared:
    from recsys.data.spark import aggregates as spark_agg
    from recsys.data.spark.session import spark_session
    from recsys.data.spark.validate import validate_events

    clock = _Clock()
    spark = spark_session(settings)
    clock.lap("session")
    with _scratch(scratch) as tmp:
        valid = validate_events(spark, directory, tmp, now=now)
        clock.lap("validate")
        events = valid.between(start, end)
        items = valid.item_map
        try:
            ref = spark_agg.last_event_time(events)
        except DataError:
            raise DataError(f"{directory}: no valid event in the window [{start}, {end})"
                            ) from None
        users = spark_agg.user_map(events)
        matrix = spark_agg.interaction_triples(events, users, items, config.interactions,
                                               ref).to_csr(len(users), len(items))
        clock.lap("matrix")
        sums = spark_agg.item_weight_sums(events, items, config.interactions, ref,
                                          config.item_windows_days)
        buyers = spark_agg.distinct_users(events, items, config.buyer_event_types)
        clock.lap("item_stats")
        co = spark_agg.cooccurrence_counts(events, items, config.basket_event_types,
                                           config.max_basket)
        clock.lap("cooccurrence")
    return Prepared("spark", valid.report, valid.items, items, users, ref, matrix, sums,
                    buyers, co, clock.seconds)


def prepare(directory: str | Path, config: PrepareConfig | None = None, *,
            engine: Engine = "pandas", start: pd.Timestamp | None = None,
            end: pd.Timestamp | None = None, now: pd.Timestamp | None = None,
            spark: SparkSettings | None = None,
            scratch: str | Path | None = None) -> Prepared:
    """Validate ``directory`` and aggregate its events with ``start <= timestamp < end``.

    ``now`` bounds timestamps as in validation (later events are dropped). ``spark`` and
    ``scratch`` (a directory for Spark's intermediate Parquet, default the system temp
    directory; on a cluster, storage every executor reaches) only apply to the Spark engine.
    """
    config = config or PrepareConfig()
    if engine == "pandas":
        return _prepare_pandas(directory, config, start, end, now)
    if engine == "spark":
        return _prepare_spark(directory, config, start, end, now, spark, scratch)
    raise ConfigError(f"engine {engine!r} (expected one of {', '.join(ENGINES)})")


def validated_dataset(directory: str | Path, *, engine: Engine = "pandas",
                      now: pd.Timestamp | None = None, spark: SparkSettings | None = None,
                      scratch: str | Path | None = None) -> Dataset:
    """The validated dataset (canonical events in file order, the catalog, the report), the
    validation and deduplication run by ``engine``: what ``recsys train --engine spark`` fits
    from. The pandas engine is :func:`~recsys.data.validate.load_dataset`."""
    if engine == "pandas":
        return load_dataset(directory, now=now)
    if engine != "spark":
        raise ConfigError(f"engine {engine!r} (expected one of {', '.join(ENGINES)})")
    from recsys.data.spark.session import spark_session
    from recsys.data.spark.validate import validate_events

    with _scratch(scratch) as tmp:
        valid = validate_events(spark_session(spark), directory, tmp, now=now)
        path = str(tmp / "events_valid.parquet")
        # in file order, as pandas keeps them; through Parquet, not the driver JVM's heap
        valid.frame.orderBy(ROW).select(*C.EVENT_COLUMNS).write.mode("overwrite").parquet(path)
        table = pq.read_table(path)
    return Dataset(canonical_frame(table), valid.items, valid.report)


def canonical_frame(table: pa.Table) -> pd.DataFrame:
    """Valid events from Spark (Arrow) with the pandas validator's dtypes: ids and sessions as
    categories of strings, timestamps ``datetime64[ns, UTC]``, the vocabularies as categories
    in :mod:`recsys.columns`' order."""
    col = {name: table.column(name).to_pandas() for name in C.EVENT_COLUMNS}
    ts = pd.to_datetime(col[C.TIMESTAMP], utc=True).astype("datetime64[ns, UTC]")
    return pd.DataFrame({
        C.USER_ID: col[C.USER_ID].astype(str).astype("category"),
        C.ITEM_ID: col[C.ITEM_ID].astype(str).astype("category"),
        C.TIMESTAMP: ts,
        C.EVENT_TYPE: pd.Categorical(col[C.EVENT_TYPE], categories=list(C.EVENT_TYPES)),
        C.QUANTITY: col[C.QUANTITY].astype("int32"),
        C.PRICE: col[C.PRICE].astype("float64"),
        C.SESSION_ID: col[C.SESSION_ID].astype("string").astype("category"),
        C.DEVICE: pd.Categorical(col[C.DEVICE], categories=list(C.DEVICES)),
    })
