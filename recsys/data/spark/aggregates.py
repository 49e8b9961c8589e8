"""The aggregates of :mod:`recsys.data.aggregates`, computed on Spark.

Same names, same arguments, same results (numpy/scipy on the driver): the pandas functions take
a validated events frame, these take :class:`~recsys.data.spark.validate.SparkEvents`. Only
aggregates travel to the driver: per-item arrays through Arrow, the large ones (the user x item
triples, the co-occurring pairs) as Parquet written under the scratch directory and read back
with pyarrow, so neither passes through the driver JVM's heap.

Weights are computed in double precision and rounded to float32 once per (user, item); the
pandas path rounds each event's weight to float32 and sums in float32, so the two agree to
float32 precision (the tests use a relative tolerance of 1e-5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys import columns as C
from recsys.data.aggregates import BASKET_DAY_FORMAT, CoCounts, ItemSums, Triples
from recsys.data.idmap import IdMap
from recsys.data.interactions import InteractionConfig
from recsys.data.spark.read import ROW
from recsys.data.spark.session import from_arrow, to_arrow
from recsys.data.spark.validate import ITEM_IDX, SparkEvents, utc_micros
from recsys.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

DAY_MICROS = 86400e6


def last_event_time(events: SparkEvents) -> pd.Timestamp:
    from pyspark.sql import functions as F

    if events.last_time is not None:        # seen by validation, no pass needed
        return events.last_time
    row = events.frame.agg(F.max(F.unix_micros(C.TIMESTAMP))).first()
    if row is None or row[0] is None:
        raise DataError("no events in the window (the last event time is undefined)")
    return pd.Timestamp(int(row[0]), unit="us", tz="UTC")


def user_map(events: SparkEvents) -> IdMap:
    """Users with an event, sorted as Spark and Python order strings (by code point).

    Spark finds the distinct ids; the driver sorts them (pyarrow compares UTF-8 bytes, which
    is code point order): a few hundred thousand ids sort in well under a second there, while
    ``orderBy`` costs Spark a sampling job and a range shuffle."""
    ids = to_arrow(events.frame.select(C.USER_ID).distinct()).column(0)
    ids = ids.take(pc.sort_indices(ids))
    return IdMap(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object))


def _age_days(reference_time: pd.Timestamp) -> Column:
    from pyspark.sql import functions as F

    return (F.lit(utc_micros(reference_time)) - F.unix_micros(C.TIMESTAMP)) / DAY_MICROS


def event_weight(config: InteractionConfig, reference_time: pd.Timestamp) -> Column:
    """The expression of :func:`recsys.data.interactions.event_weights` (double precision)."""
    from pyspark.sql import functions as F

    table = F.create_map(*[x for t in C.EVENT_TYPES
                           for x in (F.lit(t), F.lit(float(config.weights.get(t, 0.0))))])
    w = F.coalesce(table[F.col(C.EVENT_TYPE)], F.lit(0.0))
    if config.use_quantity:
        w = w * F.log1p(F.col(C.QUANTITY).cast("double")) / math.log(2.0)
    if config.half_life_days is not None:
        age = F.greatest(_age_days(reference_time), F.lit(0.0))
        w = w * F.pow(F.lit(0.5), age / float(config.half_life_days))
    return w


def _scratch(events: SparkEvents, name: str) -> str:
    return str(Path(events.scratch) / name)


def _ids_frame(events: SparkEvents, ids: IdMap, name: str) -> DataFrame:
    table = pa.table({f"_{name}_id": pa.array(ids.external_ids.astype(str)),
                      f"_{name}_pos": pa.array(np.arange(len(ids), dtype=np.int32))})
    return from_arrow(events.frame.sparkSession, table)


def interaction_triples(events: SparkEvents, users: IdMap, items: IdMap,
                        config: InteractionConfig | None = None,
                        reference_time: pd.Timestamp | None = None) -> Triples:
    """Summed weights per (user, item) of the users and items in the maps, weight > 0.

    Spark groups the events by (user id, item) and writes the sums; the driver turns the user
    ids into positions in ``users`` with pyarrow (each distinct id is looked up once). Joining
    the user map to every event in Spark instead cost a hash lookup of a string per event.
    """
    from pyspark.sql import functions as F

    config = config or InteractionConfig()
    ref = reference_time if reference_time is not None else last_event_time(events)
    weighted = (_item_positions(events, items)
                .select(F.col(C.USER_ID), F.col("i").alias("item_idx"),
                        event_weight(config, ref).alias("w"))
                .filter(F.col("w") > 0))
    # shuffled by user before grouping: a partial aggregation before the shuffle finds few
    # repeated (user, item) pairs within a task and only adds work (10.3M events: 10-11 s
    # against 14-16 s for this query)
    pairs = (weighted.repartition(C.USER_ID).groupBy(C.USER_ID, "item_idx")
             .agg(F.sum("w").cast("float").alias("weight")))
    path = _scratch(events, "triples.parquet")
    pairs.write.mode("overwrite").parquet(path)
    table = pq.read_table(path, read_dictionary=[C.USER_ID])
    user = table.column(C.USER_ID).combine_chunks()
    # position of each distinct id in the map (null: not in the map), then of each row
    known = pc.index_in(user.dictionary, value_set=pa.array(users.external_ids.astype(str)))
    user_idx = known.take(user.indices)
    keep = pc.is_valid(user_idx)
    if not pc.all(keep).as_py():
        table, user_idx = table.filter(keep), user_idx.filter(keep)
    return Triples(user_idx.to_numpy().astype(np.int32),
                   table.column("item_idx").to_numpy().astype(np.int32),
                   table.column("weight").to_numpy().astype(np.float32))


def _per_item(table: pa.Table, column: str, n_items: int, dtype: type) -> np.ndarray:
    out: np.ndarray = np.zeros(n_items, dtype=dtype)
    idx = table.column("i").to_numpy()
    out[idx] = table.column(column).to_numpy(zero_copy_only=False)
    return out


def _item_positions(events: SparkEvents, items: IdMap) -> DataFrame:
    """Events with ``i``, the item's position in ``items`` (the validation's catalog ids when
    ``items`` is that catalog, else a join)."""
    from pyspark.sql import functions as F

    if items is events.item_map or np.array_equal(items.external_ids, events.item_map.external_ids):
        return events.frame.withColumn("i", F.col(ITEM_IDX))
    joined = events.frame.join(F.broadcast(_ids_frame(events, items, "item")),
                               F.col(C.ITEM_ID) == F.col("_item_id"))
    return joined.withColumn("i", F.col("_item_pos"))


def item_weight_sums(events: SparkEvents, items: IdMap, config: InteractionConfig | None = None,
                     reference_time: pd.Timestamp | None = None,
                     last_days: Sequence[float] = (7.0, 14.0)) -> ItemSums:
    from pyspark.sql import functions as F

    config = config or InteractionConfig()
    ref = reference_time if reference_time is not None else last_event_time(events)
    w = event_weight(config, ref)
    age = _age_days(ref)
    aggs = [F.sum(w).alias("total")]
    aggs += [F.sum(F.when(age < float(d), w).otherwise(0.0)).alias(f"d{k}")
             for k, d in enumerate(last_days)]
    table = to_arrow(_item_positions(events, items).groupBy("i").agg(*aggs))
    n = len(items)
    return ItemSums(_per_item(table, "total", n, np.float64),
                    {float(d): _per_item(table, f"d{k}", n, np.float64)
                     for k, d in enumerate(last_days)})


def distinct_users(events: SparkEvents, items: IdMap,
                   event_types: Sequence[str] = (C.PURCHASE,)) -> np.ndarray:
    from pyspark.sql import functions as F

    frame = _item_positions(events, items).filter(F.col(C.EVENT_TYPE).isin(list(event_types)))
    table = to_arrow(frame.groupBy("i").agg(F.countDistinct(C.USER_ID).alias("n")))
    return _per_item(table, "n", len(items), np.int64)


def basket_key() -> Column:
    """``s:<session_id>``, or ``d:<user_id>@<UTC day>`` (the session time zone is UTC)."""
    from pyspark.sql import functions as F

    day = F.date_format(C.TIMESTAMP, "yyyyMMdd")
    assert BASKET_DAY_FORMAT == "%Y%m%d"
    return F.coalesce(F.concat(F.lit("s:"), F.col(C.SESSION_ID)),
                      F.concat(F.lit("d:"), F.col(C.USER_ID), F.lit("@"), day))


def cooccurrence_counts(events: SparkEvents, items: IdMap,
                        event_types: Sequence[str] = (C.ADD_TO_CART, C.PURCHASE),
                        max_basket: int = 100) -> CoCounts:
    """Baskets truncated to their first ``max_basket`` items by (first timestamp, file row),
    then every pair counted once per basket."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = (_item_positions(events, items)
             .filter(F.col(C.EVENT_TYPE).isin(list(event_types)))
             .select(basket_key().alias("b"), "i",
                     F.struct(F.unix_micros(C.TIMESTAMP), F.col(ROW)).alias("first")))
    # one shuffle, by basket, serves both the grouping by (basket, item) and the window by
    # basket (grouping first would shuffle by (basket, item), then again by basket)
    firsts = frame.repartition("b").groupBy("b", "i").agg(F.min("first").alias("first"))
    rank = F.row_number().over(Window.partitionBy("b").orderBy("first"))
    kept = firsts.withColumn("rank", rank).filter(F.col("rank") <= max_basket).select("b", "i")
    path = _scratch(events, "baskets.parquet")
    kept.write.mode("overwrite").parquet(path)
    kept = events.frame.sparkSession.read.parquet(path)
    left, right = kept.alias("l"), kept.alias("r")
    pairs = (left.join(right, (F.col("l.b") == F.col("r.b")) & (F.col("l.i") < F.col("r.i")))
             .groupBy(F.col("l.i").alias("a"), F.col("r.i").alias("c"))
             .agg(F.count(F.lit(1)).alias("n")))
    pairs_path = _scratch(events, "pairs.parquet")
    pairs.write.mode("overwrite").parquet(pairs_path)
    table = pq.read_table(pairs_path)
    n = len(items)
    a = table.column("a").to_numpy().astype(np.int64)
    c = table.column("c").to_numpy().astype(np.int64)
    counts = table.column("n").to_numpy().astype(np.int64)
    upper = sp.csr_matrix((counts, (a, c)), shape=(n, n), dtype=np.int64)
    co = (upper + upper.T).tocsr()
    co.sort_indices()
    per_item = to_arrow(kept.groupBy("i").agg(F.count(F.lit(1)).alias("n")))
    return CoCounts(co, _per_item(per_item, "n", n, np.int64))
