"""Cold-item check: can a model recommend items launched after training?

Items whose ``first_seen`` falls in the window have no earlier events, so collaborative
filtering and popularity know nothing about them. For every user who clicked, carted or bought
such an item in the window, each model ranks every item on sale by the end of the window
(history = all events before the window, already-seen items excluded) and we measure recall@k
of the user's cold items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.data.training import prepare_training
from recsys.history import HistoryIndex
from recsys.metrics import recall_at_k
from recsys.models.base import Model
from recsys.models.popularity import PopularityConfig, PopularityModel
from recsys.recommender import HybridRecommender

SIGNAL = (C.CLICK, C.ADD_TO_CART, C.PURCHASE)


@dataclass(frozen=True)
class ColdItemResult:
    cold_items: int
    users: int
    recall: dict[str, float]


def cold_item_recall(rec: HybridRecommender, before: pd.DataFrame, window: pd.DataFrame,
                     start: pd.Timestamp, items: pd.DataFrame, *, k: int = 20,
                     type_weights: np.ndarray | None = None) -> ColdItemResult:
    """Recall@k on cold items of the window (launched at or after ``start``) for the content
    model and per-category popularity fitted on the events ``before`` it."""
    first = pd.to_datetime(items[C.FIRST_SEEN], utc=True)
    cold = np.flatnonzero((first >= start).to_numpy())
    on_sale = (first.isna() | (first <= window[C.TIMESTAMP].max())).to_numpy()
    test = window[window[C.EVENT_TYPE].astype(str).isin(SIGNAL)]
    test_items = rec.items.to_internal(test[C.ITEM_ID], missing="minus_one")
    hit = np.isin(test_items, cold)
    frame = pd.DataFrame({"u": test[C.USER_ID].astype(str).to_numpy()[hit],
                          "i": test_items[hit]}).drop_duplicates()
    groups = frame.groupby("u")["i"].agg(lambda s: np.sort(s.to_numpy()))
    users = groups.index.to_numpy()
    if len(users) == 0:
        return ColdItemResult(len(cold), 0, {})
    weights = type_weights if type_weights is not None else np.array([1, 2, 4, 8], np.float32)
    history = HistoryIndex.from_events(before, rec.items)
    rows = sp.vstack([history.slice(u).row(len(rec.items), weights) for u in users]).tocsr()
    category_pop = PopularityModel(PopularityConfig(mode="category")).fit(
        prepare_training(before, items))
    models: dict[str, Model] = {"content": rec.parts.spaces["content"].model,
                                "popularity_category": category_pop}
    recall = {}
    for name, model in models.items():
        scores = model.score(np.full(len(users), -1), rows).astype(np.float64)
        scores[:, ~on_sale] = -np.inf
        scores[rows.nonzero()] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        recall[name] = round(recall_at_k(top, list(groups.to_numpy()), k), 4)
    return ColdItemResult(len(cold), len(users), recall)
