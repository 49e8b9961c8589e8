"""The user map, the matrix, the item sums and the buyers from one Spark aggregation.

Each of these is a sum or a flag over the events of a (user, item) pair, so one shuffle that
groups the events by pair gives them all: the matrix is the pairs' positive weights, an item's
sums and buyers add up its pairs. The pairs come back sorted by (user, item) as Parquet read with
pyarrow, so the user map is the distinct users in the order they come (sorted, as
:func:`recsys.data.spark.aggregates.user_map` sorts them) and the matrix's rows are already
grouped and sorted: the CSR is built without a sort on the driver.

Same results as :mod:`recsys.data.spark.aggregates`' separate functions (``user_map``,
``interaction_triples``, ``item_weight_sums``, ``distinct_users``), which read the events four
times: the matrix's weights are summed in double precision and rounded to float32 once per pair;
the item sums add the pairs' double-precision sums (a different order of the same additions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys import columns as C
from recsys.data.aggregates import ItemSums
from recsys.data.idmap import IdMap
from recsys.data.interactions import InteractionConfig
from recsys.data.spark.aggregates import _age_days, _item_positions, event_weight
from recsys.data.spark.validate import SparkEvents


@dataclass(frozen=True)
class UserItemAggregates:
    users: IdMap            # users with an event, sorted
    matrix: sp.csr_matrix   # users x items float32, the positive weights
    item_sums: ItemSums
    buyers: np.ndarray      # int64 per item: distinct users with an event of the buyer types


def _user_codes(users: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..n-1 of a sorted column of ids (a new code where the id changes) and the ids."""
    n = len(users)
    if n == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object)
    starts = np.ones(n, dtype=bool)
    starts[1:] = pc.not_equal(users.slice(1), users.slice(0, n - 1)).to_numpy(
        zero_copy_only=False)
    codes = (np.cumsum(starts, dtype=np.int64) - 1).astype(np.int32)
    ids = users.filter(pa.array(starts)).to_numpy(zero_copy_only=False)
    return codes, np.asarray(ids, dtype=object)


def user_item_aggregates(events: SparkEvents, items: IdMap, config: InteractionConfig,
                         reference_time: pd.Timestamp, last_days: Sequence[float] = (7.0, 14.0),
                         buyer_event_types: Sequence[str] = (C.PURCHASE,)
                         ) -> UserItemAggregates:
    """What ``user_map``, ``interaction_triples(...).to_csr``, ``item_weight_sums`` and
    ``distinct_users`` of :mod:`recsys.data.spark.aggregates` return, in one pass."""
    from pyspark.sql import functions as F

    w = event_weight(config, reference_time)
    age = _age_days(reference_time)
    per_event = _item_positions(events, items).select(
        F.col(C.USER_ID).alias("u"), "i", w.alias("w"),
        *[F.when(age < float(d), w).otherwise(0.0).alias(f"d{k}")
          for k, d in enumerate(last_days)],
        F.col(C.EVENT_TYPE).isin(list(buyer_event_types)).alias("buyer"))
    pairs = (per_event.groupBy("u", "i")
             .agg(F.sum(F.when(F.col("w") > 0, F.col("w"))).cast("float").alias("weight"),
                  F.sum("w").alias("total"),
                  *[F.sum(f"d{k}").alias(f"d{k}") for k in range(len(last_days))],
                  F.max("buyer").alias("buyer"))
             .orderBy("u", "i"))
    path = str(Path(events.scratch) / "user_items.parquet")
    pairs.write.mode("overwrite").parquet(path)
    table = pq.read_table(path)
    codes, ids = _user_codes(table.column("u"))
    users = IdMap(ids)
    i = table.column("i").to_numpy().astype(np.int32)
    n = len(items)
    weight = table.column("weight").to_numpy(zero_copy_only=False)
    has = ~np.isnan(weight)             # null (no positive weight) arrives as NaN
    index = np.int32 if has.sum() < 2**31 else np.int64     # as scipy chooses
    indptr = np.zeros(len(users) + 1, dtype=index)
    np.cumsum(np.bincount(codes[has], minlength=len(users)), out=indptr[1:])
    matrix = sp.csr_matrix((weight[has].astype(np.float32), i[has].astype(index), indptr),
                           shape=(len(users), n))
    matrix.sort_indices()           # already sorted; sets the flag the reference's matrix has

    def per_item(column: str) -> np.ndarray:
        return np.bincount(i, table.column(column).to_numpy(zero_copy_only=False), minlength=n)

    sums = ItemSums(per_item("total"), {float(d): per_item(f"d{k}")
                                        for k, d in enumerate(last_days)})
    buyer = table.column("buyer").to_numpy(zero_copy_only=False).astype(bool)
    buyers = np.bincount(i[buyer], minlength=n).astype(np.int64)
    return UserItemAggregates(users, matrix, sums, buyers)
