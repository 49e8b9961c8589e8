"""What model fitting needs from the event log, as engine-independent results (pandas reference).

Preparation (validation, deduplication, weighting, aggregation) is engine-specific: pandas on one
machine, or Spark (:mod:`recsys.data.spark`) when the log outgrows it. Model fitting always runs
on one machine, from the results defined here: a weighted user x item matrix, per-item weighted
sums, distinct buyers per item and co-occurrence counts within baskets. Each function below is
the pandas reference; :mod:`recsys.data.spark.aggregates` has the same functions over a Spark
table, and the tests compare the two.

Inputs are validated events (:func:`recsys.data.validate.validate_events`) already restricted to
the time window the caller wants (e.g. the train split), and the :class:`IdMap` of the catalog;
events of items outside the map are skipped, as :func:`build_matrix` does.

>>> sums = item_weight_sums(events, items, InteractionConfig(), last_days=(7,))  # doctest: +SKIP
>>> sums.last_days[7.0][items.to_internal(["i1"])]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.data.idmap import IdMap
from recsys.data.interactions import InteractionConfig, build_matrix, event_weights

DAY_SECONDS = 86400.0
BASKET_DAY_FORMAT = "%Y%m%d"   # a user-day basket is the UTC calendar day


@dataclass(frozen=True)
class Triples:
    """Summed interaction weights, one entry per (user, item) pair with a positive weight."""

    user_idx: np.ndarray    # int32, internal user ids
    item_idx: np.ndarray    # int32, internal item ids
    weight: np.ndarray      # float32

    def to_csr(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """The users x items float32 CSR that :func:`build_matrix` returns for the same events."""
        matrix = sp.csr_matrix((self.weight, (self.user_idx, self.item_idx)),
                               shape=(n_users, n_items), dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        return matrix

    @classmethod
    def from_csr(cls, matrix: sp.csr_matrix) -> Triples:
        coo = matrix.tocoo()
        return cls(coo.row.astype(np.int32), coo.col.astype(np.int32),
                   coo.data.astype(np.float32))


@dataclass(frozen=True)
class ItemSums:
    """Per-item sums of event weights (float64, internal-id order)."""

    total: np.ndarray                       # every event of the window
    last_days: dict[float, np.ndarray]      # events less than d days before the reference time


@dataclass(frozen=True)
class CoCounts:
    """Co-occurrence of items within baskets, after truncating each basket to ``max_basket``."""

    pairs: sp.csr_matrix    # items x items int64, symmetric, zero diagonal: baskets with both
    baskets: np.ndarray     # int64 per item: baskets holding the item (the diagonal)


def last_event_time(events: pd.DataFrame) -> pd.Timestamp:
    """The default time that ages are measured back from: the last event."""
    return pd.Timestamp(events[C.TIMESTAMP].max())


def user_map(events: pd.DataFrame) -> IdMap:
    """Users with an event, in the order :func:`recsys.data.training.prepare_training` uses
    (the categories' order; validation makes them sorted unless the file's own categorical
    dictionary says otherwise)."""
    return IdMap.from_values(events[C.USER_ID])


def interaction_triples(events: pd.DataFrame, users: IdMap, items: IdMap,
                        config: InteractionConfig | None = None,
                        reference_time: pd.Timestamp | None = None) -> Triples:
    """``weight[type] x log2(1 + quantity) x 0.5^(age / half_life)`` summed per (user, item):
    the entries of :func:`recsys.data.interactions.build_matrix`."""
    return Triples.from_csr(build_matrix(events, users, items, config, reference_time))


def _item_positions(events: pd.DataFrame, items: IdMap) -> np.ndarray:
    return items.to_internal(events[C.ITEM_ID], missing="minus_one")


def item_weight_sums(events: pd.DataFrame, items: IdMap, config: InteractionConfig | None = None,
                     reference_time: pd.Timestamp | None = None,
                     last_days: Sequence[float] = (7.0, 14.0)) -> ItemSums:
    """Per item: the summed event weight over the window and over each trailing window of
    ``d`` days (age < d, age measured back from ``reference_time``, default the last event).

    With ``config.half_life_days`` set the weights decay, so ``total`` is a "recent"
    popularity; a previous-week count is ``last_days[14] - last_days[7]``.
    """
    config = config or InteractionConfig()
    ref = reference_time if reference_time is not None else (
        last_event_time(events) if len(events) else pd.Timestamp(0, tz="UTC"))
    idx = _item_positions(events, items)
    w = event_weights(events, config, ref).astype(np.float64)
    age_days = (pd.Timestamp(ref) - events[C.TIMESTAMP]).dt.total_seconds().to_numpy() / DAY_SECONDS
    keep = idx >= 0
    n = len(items)
    total = np.bincount(idx[keep], w[keep], minlength=n)
    windows = {}
    for d in last_days:
        inside = keep & (age_days < float(d))
        windows[float(d)] = np.bincount(idx[inside], w[inside], minlength=n)
    return ItemSums(total, windows)


def distinct_users(events: pd.DataFrame, items: IdMap,
                   event_types: Sequence[str] = (C.PURCHASE,)) -> np.ndarray:
    """int64 per item: distinct users with at least one event of ``event_types`` on it."""
    frame = events[events[C.EVENT_TYPE].astype(str).isin(list(event_types))]
    idx = _item_positions(frame, items)
    pairs = pd.DataFrame({"u": frame[C.USER_ID].astype(str).to_numpy(), "i": idx})
    pairs = pairs[pairs["i"] >= 0].drop_duplicates()
    return np.bincount(pairs["i"].to_numpy(), minlength=len(items)).astype(np.int64)


def basket_keys(events: pd.DataFrame) -> pd.Series:
    """A basket per event: ``s:<session_id>``, or ``d:<user_id>@<UTC day>`` without a session."""
    day = events[C.TIMESTAMP].dt.strftime(BASKET_DAY_FORMAT).astype(str)
    by_day = "d:" + events[C.USER_ID].astype(str) + "@" + day
    if C.SESSION_ID not in events:
        return by_day
    session = events[C.SESSION_ID].astype("string")
    return ("s:" + session).fillna(by_day).astype(str)


def cooccurrence_counts(events: pd.DataFrame, items: IdMap,
                        event_types: Sequence[str] = (C.ADD_TO_CART, C.PURCHASE),
                        max_basket: int = 100) -> CoCounts:
    """Pairs of items in the same basket (a session, else a user-day), counted once per basket.

    Only events of ``event_types`` count. A basket keeps its first ``max_basket`` distinct items
    by their first event (timestamp, then position in ``events``: the file order), as
    :class:`recsys.copurchase.CoPurchase` truncates baskets.
    """
    frame = events[events[C.EVENT_TYPE].astype(str).isin(list(event_types))]
    idx = _item_positions(frame, items)
    table = pd.DataFrame({"b": basket_keys(frame).to_numpy(), "i": idx,
                          "t": frame[C.TIMESTAMP].to_numpy()})
    table = table[table["i"] >= 0].sort_values("t", kind="stable")
    table = table.drop_duplicates(["b", "i"])
    table = table[table.groupby("b").cumcount() < max_basket]
    codes = pd.factorize(table["b"])[0]
    n_b = int(codes.max()) + 1 if len(codes) else 0
    baskets = sp.csr_matrix((np.ones(len(table), np.int64), (codes, table["i"].to_numpy())),
                            shape=(n_b, len(items)))
    co = (baskets.T @ baskets).tocsr()
    diagonal = co.diagonal().astype(np.int64)
    co.setdiag(0)
    co.eliminate_zeros()
    co.sort_indices()
    return CoCounts(co.astype(np.int64), diagonal)
