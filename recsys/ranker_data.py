"""Training queries for the ranker, point in time, from a window of events (the valid split).

A query is a request a shopper could have made: a session (``session_id``, else user-day) and
a time ``t`` inside it. The context is the session's events strictly before ``t`` (views and
clicks as recent views, add-to-carts not yet bought as the cart); the history is the user's
events strictly before ``t``; the labels are the session's events at or after ``t``, graded by
the deepest event type (``ranker.grades``: purchase 4 > add_to_cart 3 > click 2 > view 1 > none
0 by default). Candidates and features come from :meth:`HybridRecommender.prepare`, the code
serving runs, so training and serving cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys import columns as C
from recsys.context import Request
from recsys.history import TYPE_CODE, HistoryIndex, to_seconds
from recsys.recommender import HybridRecommender


@dataclass
class RankerDataset:
    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    queries: pd.DataFrame      # user_id, t, n_candidates, n_positive (one row per kept query)
    skipped_no_positive: int


def sample_queries(window: pd.DataFrame, *, max_queries: int, seed: int) -> pd.DataFrame:
    """One query per session (sampled down to ``max_queries``), in time order.

    Half the sessions (seeded) are queried at their start, with no session context, as a home
    page or an e-mail would ask; the others at a random later event, with the session so far as
    context (as a product or cart page would ask), when the session spans several timestamps.
    """
    frame = window[[C.USER_ID, C.TIMESTAMP, C.SESSION_ID]].copy()
    frame[C.USER_ID] = frame[C.USER_ID].astype(str)
    day = frame[C.TIMESTAMP].dt.strftime("%Y%m%d")
    sess = frame[C.SESSION_ID].astype("string")
    frame["key"] = sess.fillna(frame[C.USER_ID] + "@" + day).astype(str)
    frame["t"] = to_seconds(frame[C.TIMESTAMP])
    rng = np.random.default_rng(seed)
    frame["r"] = rng.random(len(frame))
    first = frame.groupby("key")["t"].transform("min")
    mid_session = frame["key"].map(
        pd.Series(rng.random(frame["key"].nunique()) < 0.5, index=frame["key"].unique()))
    later = frame[(frame["t"] > first) & mid_session]
    pick_later = later.loc[later.groupby("key")["r"].idxmax()]
    single = (frame[~frame["key"].isin(pick_later["key"])].sort_values("t", kind="stable")
              .drop_duplicates("key"))
    queries = pd.concat([pick_later, single])[["key", C.USER_ID, "t"]]
    if len(queries) > max_queries:
        queries = queries.sample(max_queries, random_state=seed)
    return queries.sort_values(["t", "key"]).reset_index(drop=True)


def build_dataset(rec: HybridRecommender, window: pd.DataFrame, history: HistoryIndex, *,
                  max_queries: int = 20000, seed: int = 0, context_views: int = 20,
                  progress: bool = False) -> RankerDataset:
    """Features and graded labels for sampled queries of ``window``; a query's session context
    keeps its last ``context_views`` views."""
    grade_of = rec.config.ranker.grade_by_type()
    queries = sample_queries(window, max_queries=max_queries, seed=seed)
    w = window.copy()
    w[C.USER_ID] = w[C.USER_ID].astype(str)
    day = w[C.TIMESTAMP].dt.strftime("%Y%m%d")
    w["key"] = w[C.SESSION_ID].astype("string").fillna(w[C.USER_ID] + "@" + day).astype(str)
    w["t"] = to_seconds(w[C.TIMESTAMP])
    w["type"] = pd.Categorical(w[C.EVENT_TYPE], categories=list(C.EVENT_TYPES)).codes
    w["item"] = rec.items.to_internal(w[C.ITEM_ID], missing="minus_one")
    w = w[w["item"] >= 0].sort_values(["key", "t"], kind="stable")
    keys = w["key"].to_numpy()
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    span = {k: (int(a), int(b)) for k, a, b in zip(keys[starts], starts,
                                                     np.r_[starts[1:], len(w)], strict=True)}
    t_all, type_all, item_all = w["t"].to_numpy(), w["type"].to_numpy(), w["item"].to_numpy()
    dev_all = (w[C.DEVICE].astype("string").to_numpy(na_value=None)
               if C.DEVICE in w else np.full(len(w), None))
    feats, labels, groups, kept = [], [], [], []
    skipped = 0
    rows = queries.itertuples(index=False)
    for q in tqdm(rows, total=len(queries), disable=not progress, desc="ranker queries",
                  mininterval=2.0):
        lo, hi = span[q.key]
        cut = lo + int(np.searchsorted(t_all[lo:hi], q.t, side="left"))
        b_items, b_types = item_all[lo:cut], type_all[lo:cut]
        views = b_items[b_types <= TYPE_CODE[C.CLICK]]
        bought = set(b_items[b_types == TYPE_CODE[C.PURCHASE]].tolist())
        cart = [i for i in b_items[b_types == TYPE_CODE[C.ADD_TO_CART]].tolist()
                if i not in bought]
        device = dev_all[lo]
        request = Request(
            user_id=q.user_id, timestamp=pd.Timestamp(q.t, unit="s", tz="UTC"),
            device=None if device is None else str(device),
            cart=tuple(rec.items.to_external(cart)),
            recent_views=tuple(rec.items.to_external(views[-context_views:]))
            if context_views else ())
        prep = rec.prepare(request, history=history.slice(q.user_id, before=q.t))
        if len(prep.pool) == 0:
            skipped += 1
            continue
        grade = np.zeros(len(rec.items), dtype=np.int32)
        np.maximum.at(grade, item_all[cut:hi], grade_of[type_all[cut:hi]])
        y = grade[prep.pool.ids]
        if y.max() == 0:
            skipped += 1
            continue
        feats.append(prep.features)
        labels.append(y)
        groups.append(len(y))
        kept.append((q.user_id, q.t, len(y), int((y > 0).sum())))
    if not feats:
        return RankerDataset(np.empty((0, 0), np.float32), np.empty(0, np.int32),
                             np.empty(0, np.int64), pd.DataFrame(), skipped)
    return RankerDataset(np.vstack(feats), np.concatenate(labels), np.asarray(groups),
                         pd.DataFrame(kept, columns=["user_id", "t", "n_candidates",
                                                     "n_positive"]), skipped)
