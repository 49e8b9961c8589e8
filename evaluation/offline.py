"""Offline evaluation through the serving code path.

For every user active in the evaluation window, ask :class:`~recsys.recommender.Recommender`
for a top-k list as of the window's start (history = everything before it, no session
context), for the hybrid and for each baseline pipeline (same fitted parts, same rules), then
score the lists against what the user did in the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from evaluation.business import business_metrics
from evaluation.ranking import ranking_metrics
from recsys import columns as C
from recsys.history import PURCHASE
from recsys.recommender import Recommender, Request


@dataclass
class EvalWindow:
    """Users and their window events, aligned: row i of every list is ``users[i]``."""

    users: np.ndarray                     # external ids
    start: pd.Timestamp
    relevant: list[np.ndarray]            # internal ids of purchased items (all)
    relevant_new: list[np.ndarray]        # ... excluding items the user bought before
    events: pd.DataFrame                  # user_id = row index, item_id internal, type, price
    returning: np.ndarray                 # bool: user has history before the window
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def make_window(rec: Recommender, window_events: pd.DataFrame, *, start: pd.Timestamp,
                max_users: int | None = None, seed: int = 0) -> EvalWindow:
    """Users with at least one purchase in ``window_events`` (sampled to ``max_users``)."""
    ev = window_events.copy()
    ev[C.USER_ID] = ev[C.USER_ID].astype(str)
    ev["item"] = rec.items.to_internal(ev[C.ITEM_ID], missing="minus_one")
    ev = ev[ev["item"] >= 0]
    buyers = np.sort(ev.loc[ev[C.EVENT_TYPE].astype(str) == C.PURCHASE, C.USER_ID].unique())
    if max_users is not None and len(buyers) > max_users:
        buyers = np.sort(np.random.default_rng(seed).choice(buyers, max_users, replace=False))
    row = {u: i for i, u in enumerate(buyers)}
    ev = ev[ev[C.USER_ID].isin(row)]
    ev["row"] = ev[C.USER_ID].map(row).astype(np.int64)
    bought = ev[ev[C.EVENT_TYPE].astype(str) == C.PURCHASE].groupby("row")["item"].agg(
        lambda s: np.unique(s.to_numpy()))
    relevant = [bought.get(i, np.empty(0, np.int64)) for i in range(len(buyers))]
    before = int(pd.Timestamp(start).timestamp())
    relevant_new, returning = [], np.zeros(len(buyers), dtype=bool)
    for i, u in enumerate(buyers):
        hist = rec.history.slice(u, before=before)
        returning[i] = len(hist) > 0
        past = hist.items[hist.types == PURCHASE]
        relevant_new.append(np.setdiff1d(relevant[i], past))
    events = pd.DataFrame({
        "user_id": ev["row"].to_numpy(), "item_id": ev["item"].to_numpy(),
        "event_type": ev[C.EVENT_TYPE].astype(str).to_numpy(),
        "price": ev[C.PRICE].to_numpy(np.float64), "quantity": ev[C.QUANTITY].to_numpy()})
    return EvalWindow(buyers, pd.Timestamp(start), relevant, relevant_new, events, returning)


def recommend_lists(rec: Recommender, window: EvalWindow, k: int, *,
                    progress: bool = False, desc: str = "") -> np.ndarray:
    """(n_users x k) internal ids, -1 padded, as the API would have answered at window start."""
    out = np.full((len(window.users), k), -1, dtype=np.int64)
    for i, user in enumerate(tqdm(window.users, disable=not progress, desc=desc,
                                  mininterval=2.0)):
        response = rec.recommend(Request(user_id=str(user), timestamp=window.start, k=k),
                                 explain=False)
        ids = rec.items.to_internal([r.item_id for r in response.items])
        out[i, : len(ids)] = ids
    return out


def score_lists(recs: np.ndarray, window: EvalWindow, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean ranking (all and new-to-user items) and business metrics at each k."""
    out: dict[str, float] = {}
    for k in ks:
        for name, values in ranking_metrics(recs, window.relevant, k).items():
            out[name] = float(np.nanmean(values))
        for name, values in ranking_metrics(recs, window.relevant_new, k).items():
            out[f"new_{name}"] = float(np.nanmean(values))
        biz = business_metrics(recs, window.events, k)
        for name, values in biz.items():
            if name != "orders":
                out[name] = float(np.nanmean(values))
    return out
