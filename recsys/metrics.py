"""Ranking metrics over batches of recommendation lists, used by early stopping and model
selection inside the library. ``evaluation/`` holds the full analyst-facing metric set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _hits(recs: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Boolean (users x k): is the item at each rank relevant? One ``isin`` over (row, item)
    keys for the whole batch (one per row cost 0.45 s for 5,000 rows)."""
    recs = np.asarray(recs)[:, :k].astype(np.int64)
    lengths = np.array([len(r) for r in relevant], dtype=np.int64)
    if not lengths.sum():
        return np.zeros(recs.shape, dtype=bool)
    width = int(max(recs.max(initial=0), max(int(np.max(r)) for r in relevant if len(r)))) + 2
    rows = np.repeat(np.arange(len(relevant), dtype=np.int64), lengths)
    wanted = rows * width + np.concatenate([np.asarray(r, np.int64) for r in relevant])
    keys = np.arange(len(recs), dtype=np.int64)[:, None] * width + recs
    return np.isin(keys, wanted) & (recs >= 0)


def recall_at_k(recs: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / min(|relevant|, k)."""
    hits = _hits(recs, relevant, k).sum(axis=1)
    denom = np.array([min(len(r), k) for r in relevant], dtype=np.float64)
    ok = denom > 0
    return float(np.mean(hits[ok] / denom[ok])) if ok.any() else 0.0


def ndcg_at_k(recs: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean over users of DCG@k / ideal DCG@k with binary relevance."""
    hits = _hits(recs, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discounts).sum(axis=1)
    n_rel = np.array([min(len(r), k) for r in relevant])
    ideal = np.array([discounts[:n].sum() for n in n_rel])
    ok = ideal > 0
    return float(np.mean(dcg[ok] / ideal[ok])) if ok.any() else 0.0
