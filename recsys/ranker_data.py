"""Training sets for the rankers, point in time, from the latest window of events.

Two kinds of query, each a request a shopper could have made:

* **horizon**: at the window's start (and at ``cutoffs - 1`` later instants spread over its
  first half), every shopper with history who did something after the instant asks with no
  session context (a home page, an e-mail); the labels are everything they did from then to
  the window's end. This is the protocol production lives: parts fitted on the events before,
  recommend at the instant, score what came after.
* **session**: inside a session that spans several moments, at a random later event, with the
  session so far as context (views and clicks as recent views, add-to-carts not yet bought as
  the cart), as a product or cart page asks; the labels are the rest of the session.

Labels grade each item by the deepest event (``ranker.grades``: purchase 4 > add_to_cart 3 >
click 2 > view 1 > none 0 by default). The history is sliced strictly before the query time.
Each query is asked once per surface with that surface's eligibility (``for_you``: everything,
``buy_again``: items the shopper bought, ``discover``: items new to them), so each surface's
ranker learns from its own candidates and target. Candidates and features come from
:meth:`HybridRecommender.prepare`, the code serving runs, so training and serving cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.batch import Progress, Workers, check_workers
from recsys.context import Request
from recsys.history import TYPE_CODE, HistoryIndex, to_seconds
from recsys.recommender import SURFACES, HybridRecommender


@dataclass
class RankerDataset:
    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    queries: pd.DataFrame      # kind, user_id, t, n_candidates, n_positive (one row per query)
    skipped_no_positive: int


@dataclass
class Query:
    kind: str                  # "horizon" | "session"
    user_id: str
    t: int                     # epoch seconds
    items: np.ndarray          # labelled items (sorted) and their grades
    grades: np.ndarray
    device: str | None = None
    cart: tuple[int, ...] = ()
    views: tuple[int, ...] = ()


# fewer queries are asked in this process whatever the workers (a fork costs more)
PARALLEL_MIN = 500
Row = tuple[np.ndarray, np.ndarray, Query]     # a query's feature rows, labels, the query


def _prepared(window: pd.DataFrame, rec: HybridRecommender) -> pd.DataFrame:
    w = window[[C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE]].copy()
    w[C.USER_ID] = w[C.USER_ID].astype(str)
    w["item"] = rec.items.to_internal(window[C.ITEM_ID], missing="minus_one")
    w["type"] = pd.Categorical(window[C.EVENT_TYPE], categories=list(C.EVENT_TYPES)).codes
    w["grade"] = rec.config.ranker.grade_by_type()[w["type"].to_numpy()]
    w["t"] = to_seconds(window[C.TIMESTAMP])
    day = window[C.TIMESTAMP].dt.strftime("%Y%m%d")
    session = (window[C.SESSION_ID].astype("string") if C.SESSION_ID in window
               else pd.Series(pd.NA, index=window.index, dtype="string"))
    w["key"] = session.fillna(w[C.USER_ID] + "@" + day).astype(str)
    w["device"] = (window[C.DEVICE].astype("string") if C.DEVICE in window
                   else pd.Series(pd.NA, index=window.index, dtype="string"))
    return w[(w["item"] >= 0) & (w["grade"] > 0)]


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    best = frame.groupby("item")["grade"].max()
    return best.index.to_numpy(np.int64), best.to_numpy(np.int32)


def horizon_queries(w: pd.DataFrame, starts: Sequence[int], history: HistoryIndex
                    ) -> list[Query]:
    """Per instant in ``starts``: one query per shopper with history before it and an event
    at or after it; the labels are each item's best grade from the instant on."""
    out = []
    for start in starts:
        best = (w[w["t"] >= start].groupby([C.USER_ID, "item"], sort=True)["grade"].max()
                .reset_index())
        users = best[C.USER_ID].to_numpy()
        items, grades = best["item"].to_numpy(np.int64), best["grade"].to_numpy(np.int32)
        bounds = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1, len(users)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            user = str(users[lo])
            if len(history.slice(user, before=start)):
                out.append(Query("horizon", user, start, items[lo:hi], grades[lo:hi]))
    return out


def session_queries(w: pd.DataFrame, rng: np.random.Generator,
                    context_views: int) -> list[Query]:
    """Per session spanning several moments: one query at a random later event."""
    w = w.sort_values(["key", "t"], kind="stable")
    out = []
    for _, frame in w.groupby("key", sort=True):
        times = frame["t"].to_numpy()
        later = np.flatnonzero(times > times[0])
        if len(later) == 0:
            continue
        cut = int(later[rng.integers(len(later))])
        cut = int(np.searchsorted(times, times[cut], side="left"))
        before, after = frame.iloc[:cut], frame.iloc[cut:]
        types, items = before["type"].to_numpy(), before["item"].to_numpy()
        bought = set(items[types == TYPE_CODE[C.PURCHASE]].tolist())
        cart = tuple(i for i in items[types == TYPE_CODE[C.ADD_TO_CART]].tolist()
                     if i not in bought)
        views = items[types <= TYPE_CODE[C.CLICK]]
        device = frame["device"].iloc[0]
        label_items, grades = _labels(after)
        out.append(Query("session", str(frame[C.USER_ID].iloc[0]), int(times[cut]),
                         label_items, grades, None if pd.isna(device) else str(device), cart,
                         tuple(views[-context_views:].tolist()) if context_views else ()))
    return out


def sample(queries: list[Query], max_queries: int, rng: np.random.Generator) -> list[Query]:
    """Horizon queries first (the production target), sessions fill up to ``max_queries``."""
    horizon = [q for q in queries if q.kind == "horizon"]
    session = [q for q in queries if q.kind == "session"]
    if len(horizon) >= max_queries:
        pick = np.sort(rng.choice(len(horizon), max_queries, replace=False))
        return [horizon[i] for i in pick]
    room = max_queries - len(horizon)
    if len(session) > room:
        session = [session[i] for i in np.sort(rng.choice(len(session), room, replace=False))]
    return horizon + session


def build_datasets(rec: HybridRecommender, window: pd.DataFrame, history: HistoryIndex, *,
                   start: int, cutoffs: int = 1, max_queries: int = 20000, seed: int = 0,
                   context_views: int = 20, surfaces: Sequence[str] = SURFACES,
                   progress: bool = False, workers: int | None = 1
                   ) -> dict[str, RankerDataset]:
    """Features and graded labels per surface for the queries of ``window`` (events at or after
    ``start``, epoch seconds; ``cutoffs`` horizon instants over its first half). The queries
    are asked in ``workers`` processes (:class:`recsys.batch.Workers`; None: every core) from
    :data:`PARALLEL_MIN` queries on; the rows come back in query order, so the result does not
    depend on ``workers``."""
    rng = np.random.default_rng(seed)
    w = _prepared(window, rec)
    end = int(w["t"].max()) if len(w) else start
    starts = [int(start + (end - start) * 0.5 * j / max(cutoffs - 1, 1)) for j in range(cutoffs)]
    queries = sample(horizon_queries(w, starts, history) + session_queries(w, rng, context_views),
                     max_queries, rng)
    parts: dict[str, list[Row]] = {s: [] for s in surfaces}
    skipped = dict.fromkeys(surfaces, 0)
    bar = Progress(len(queries), "ranker queries", unit="queries") if progress else None
    workers = 1 if len(queries) < PARALLEL_MIN else check_workers(workers)
    with Workers(_Asker(rec, history, tuple(surfaces)), workers) as pool:
        for chunk in pool.map(_ask, queries, progress=bar):
            for surface, rows in chunk.items():
                parts[surface].extend(row for row in rows if row is not None)
                skipped[surface] += sum(row is None for row in rows)
    if bar is not None:
        bar.close()
    return {s: _dataset(rows, skipped[s]) for s, rows in parts.items()}


@dataclass
class _Asker:
    """What a worker needs to ask queries: the point-in-time recommender and the history."""

    rec: HybridRecommender
    history: HistoryIndex
    surfaces: tuple[str, ...]


def _ask(asker: _Asker, queries: Sequence[Query]) -> dict[str, list[Row | None]]:
    """Each query asked on each surface: its features and labels, or None when the pool is
    empty or holds no labelled item (the query teaches that surface nothing)."""
    rec = asker.rec
    out: dict[str, list[Row | None]] = {s: [] for s in asker.surfaces}
    to_external = rec.items.external_ids
    for q in queries:
        past = asker.history.slice(q.user_id, before=q.t)
        for surface in asker.surfaces:
            request = Request(user_id=q.user_id, timestamp=pd.Timestamp(q.t, unit="s", tz="UTC"),
                              device=q.device, cart=tuple(to_external[list(q.cart)]),
                              recent_views=tuple(to_external[list(q.views)]), surface=surface)
            prep = rec.prepare(request, history=past)
            ids = prep.pool.ids
            pos = np.minimum(np.searchsorted(q.items, ids), len(q.items) - 1)
            y = np.where(q.items[pos] == ids, q.grades[pos], 0).astype(np.int32)
            out[surface].append(None if len(ids) == 0 or y.max() == 0
                                else (prep.features, y, q))
    return out


def _dataset(rows: list[Row], skipped: int) -> RankerDataset:
    if not rows:
        return RankerDataset(np.empty((0, 0), np.float32), np.empty(0, np.int32),
                             np.empty(0, np.int64), pd.DataFrame(), skipped)
    rows = sorted(rows, key=lambda r: r[2].t)     # in time order: the ranker holds out the last
    queries = pd.DataFrame([(q.kind, q.user_id, q.t, len(y), int((y > 0).sum()))
                            for _, y, q in rows],
                           columns=["kind", "user_id", "t", "n_candidates", "n_positive"])
    return RankerDataset(np.vstack([f for f, _, _ in rows]),
                         np.concatenate([y for _, y, _ in rows]),
                         np.array([len(y) for _, y, _ in rows]), queries, skipped)


def concat(datasets: Sequence[RankerDataset]) -> RankerDataset:
    """Training sets of several windows as one (queries stay grouped, in window order)."""
    parts = [d for d in datasets if len(d.groups)]
    skipped = sum(d.skipped_no_positive for d in datasets)
    if not parts:
        return _dataset([], skipped)
    return RankerDataset(np.vstack([d.features for d in parts]),
                         np.concatenate([d.labels for d in parts]),
                         np.concatenate([d.groups for d in parts]),
                         pd.concat([d.queries for d in parts], ignore_index=True), skipped)
