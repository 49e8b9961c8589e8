"""Ranking accuracy at k, per user: precision, recall, NDCG, AP, reciprocal rank, hit rate.

Every metric returns one float per user (a row of ``recs``) so the same arrays feed the mean,
bootstrap CIs and paired tests (:mod:`evaluation.bootstrap`). Conventions (``docs/metrics.md``):

* ``relevant[u]`` is the set of items user ``u`` interacted with in the evaluation window (in
  the backtest, what the shopper bought after the cutoff), optionally with graded ``gains[u]``
  (same length, > 0; an item with gain 0 is not relevant).
* A user with no relevant item gets ``NaN`` for every metric: there was nothing to find, so the
  user says nothing about ranking quality. Means skip NaN, so all metrics average the same users.
* Empty slots (``-1``) keep their rank and are never relevant; precision divides by ``k``.
* AP@k divides by ``min(|relevant|, k)`` so a perfect top-k scores 1 even when the user has more
  than k relevant items (trec_eval's ``map_cut`` divides by ``|relevant|`` instead).

Example::

    per_user = ranking_metrics(recs, relevant, k=10)
    summary = mean_metrics(per_user)          # {"ndcg@10": 0.31, ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from evaluation.lists import PAD, check_recs
from recsys import columns as C
from recsys.errors import DataError

Gain = Literal["linear", "exponential"]


@dataclass(frozen=True)
class Judgements:
    """Recommendations matched against the relevant sets, computed once for all metrics.

    ``gain`` (users x k): gain of the item at each rank, 0 for non-relevant or empty slots.
    ``ideal`` (users x k): the user's own gains sorted descending (the best possible top-k).
    ``n_relevant`` (users,): number of relevant items per user.
    """

    gain: np.ndarray
    ideal: np.ndarray
    n_relevant: np.ndarray

    @property
    def hits(self) -> np.ndarray:
        """Boolean (users x k): is the item at each rank relevant?"""
        return self.gain > 0

    @property
    def k(self) -> int:
        return int(self.gain.shape[1])


def _flatten(relevant: Sequence[ArrayLike], gains: Sequence[ArrayLike] | None,
             n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user sets -> flat (user, item, gain) arrays with unique (user, item), gain > 0."""
    if len(relevant) != n_users:
        raise DataError(f"relevant has {len(relevant)} entries but recs has {n_users} rows; "
                        "give one (possibly empty) set per user")
    parts = [np.asarray(r, dtype=np.int64).ravel() for r in relevant]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n_users)
    items = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    if gains is None:
        gain = np.ones(len(items))
    else:
        if len(gains) != n_users:
            raise DataError(f"gains has {len(gains)} entries but recs has {n_users} rows")
        gparts = [np.asarray(g, dtype=np.float64).ravel() for g in gains]
        bad = [u for u, (g, p) in enumerate(zip(gparts, parts, strict=True)) if len(g) != len(p)]
        if bad:
            raise DataError(f"gains[{bad[0]}] has {len(gparts[bad[0]])} values for "
                            f"{len(parts[bad[0]])} relevant items")
        gain = np.concatenate(gparts) if gparts else np.empty(0)
    if len(items) and items.min() < 0:
        raise DataError(f"relevant item ids must be >= 0, got {items.min()}")
    if not np.all(np.isfinite(gain)) or (len(gain) and gain.min() < 0):
        raise DataError("gains must be finite and >= 0")
    keep = gain > 0
    users, items, gain = users[keep], items[keep], gain[keep]
    # a repeated (user, item) keeps its largest gain
    order = np.lexsort((-gain, items, users))
    users, items, gain = users[order], items[order], gain[order]
    first = np.ones(len(users), dtype=bool)
    first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return users[first], items[first], gain[first]


def judge(recs: ArrayLike, relevant: Sequence[ArrayLike], k: int,
          gains: Sequence[ArrayLike] | None = None) -> Judgements:
    """Match the top-k of each list against the user's relevant items (vectorised lookup)."""
    top = check_recs(recs, k)
    n_users = top.shape[0]
    users, items, gain = _flatten(relevant, gains, n_users)
    stride = int(max(items.max(initial=0), top.max(initial=0))) + 1
    keys = users * stride + items  # sorted: _flatten orders by (user, item)
    rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * stride + top
    pos = np.minimum(np.searchsorted(keys, rec_keys), max(len(keys) - 1, 0))
    found = (top != PAD) & (len(keys) > 0)
    if len(keys):
        found &= keys[pos] == rec_keys
    hit_gain = np.where(found, gain[pos] if len(keys) else 0.0, 0.0)

    n_relevant = np.bincount(users, minlength=n_users)
    ideal = np.zeros((n_users, k))
    order = np.lexsort((-gain, users))
    su, sg = users[order], gain[order]
    starts = np.concatenate([[0], np.cumsum(n_relevant)[:-1]])
    rank = np.arange(len(su)) - starts[su]
    keep = rank < k
    ideal[su[keep], rank[keep]] = sg[keep]
    return Judgements(gain=hit_gain, ideal=ideal, n_relevant=n_relevant)


def _per_user(values: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NaN for users without relevant items, the value otherwise."""
    return np.where(n_relevant > 0, values, np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision(j: Judgements) -> np.ndarray:
    """Precision@k = |top-k ∩ relevant| / k."""
    return _per_user(j.hits.sum(axis=1) / j.k, j.n_relevant)


def recall(j: Judgements, capped: bool = False) -> np.ndarray:
    """Recall@k = |top-k ∩ relevant| / |relevant| (``capped``: / min(|relevant|, k),
    as :func:`recsys.metrics.recall_at_k`)."""
    den = np.minimum(j.n_relevant, j.k) if capped else j.n_relevant
    return _ratio(j.hits.sum(axis=1).astype(float), den.astype(float))


def ndcg(j: Judgements, gain: Gain = "linear") -> np.ndarray:
    """NDCG@k = DCG@k / ideal DCG@k, DCG = sum_i g_i / log2(i + 1) over ranks i = 1..k.

    ``gain="linear"`` uses g as given (trec_eval, scikit-learn); ``"exponential"`` uses
    2^g - 1 (Burges et al.). With binary relevance both are the same.
    """
    discount = 1.0 / np.log2(np.arange(2, j.k + 2))
    g, ideal = (j.gain, j.ideal) if gain == "linear" else (2.0**j.gain - 1, 2.0**j.ideal - 1)
    return _ratio(g @ discount, ideal @ discount)


def average_precision(j: Judgements) -> np.ndarray:
    """AP@k = sum_{i<=k} P@i * rel_i / min(|relevant|, k)."""
    hits = j.hits
    prec_at_i = np.cumsum(hits, axis=1) / np.arange(1, j.k + 1)
    num = (prec_at_i * hits).sum(axis=1)
    return _ratio(num, np.minimum(j.n_relevant, j.k).astype(float))


def reciprocal_rank(j: Judgements) -> np.ndarray:
    """RR@k = 1 / rank of the first relevant item in the top-k, 0 if none."""
    hits = j.hits
    first = hits.argmax(axis=1)
    return _per_user(np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0), j.n_relevant)


def hit_rate(j: Judgements) -> np.ndarray:
    """HR@k = 1 if any relevant item is in the top-k, else 0."""
    return _per_user(j.hits.any(axis=1).astype(float), j.n_relevant)


def ranking_metrics(recs: ArrayLike, relevant: Sequence[ArrayLike], k: int,
                    gains: Sequence[ArrayLike] | None = None,
                    gain: Gain = "linear") -> dict[str, np.ndarray]:
    """All ranking metrics at ``k``, per user, keyed ``"name@k"``.

    With ``gains`` NDCG is graded (``"ndcg@k"``) and a binary ``"ndcg_binary@k"`` is added;
    the other metrics only use which items are relevant.

    >>> m = ranking_metrics([[5, 2, 9]], [[2, 9]], k=3)
    >>> round(float(m["map@3"][0]), 4)  # hits at ranks 2 and 3: (1/2 + 2/3) / 2
    0.5833
    """
    j = judge(recs, relevant, k, gains)
    out = {
        f"precision@{k}": precision(j),
        f"recall@{k}": recall(j),
        f"ndcg@{k}": ndcg(j, gain),
        f"map@{k}": average_precision(j),
        f"mrr@{k}": reciprocal_rank(j),
        f"hit_rate@{k}": hit_rate(j),
    }
    if gains is not None:
        binary = Judgements(j.hits.astype(float), (j.ideal > 0).astype(float), j.n_relevant)
        out[f"ndcg_binary@{k}"] = ndcg(binary)
    return out


def mean_metrics(per_user: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean over users with a defined value (NaN skipped); NaN if no user has one."""
    out = {}
    for name, values in per_user.items():
        v = np.asarray(values, dtype=float)
        ok = ~np.isnan(v)
        out[name] = float(v[ok].mean()) if ok.any() else float("nan")
    return out


def relevant_sets(events: pd.DataFrame, n_users: int, gain_col: str | None = None,
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Per-user relevant items (and gains) from a long frame of test interactions.

    ``events[user_id]`` is the evaluation row (0..n_users-1), ``events[item_id]`` the internal
    item id; ``gain_col`` (e.g. a count or rating) makes graded gains.
    """
    need = [C.USER_ID, C.ITEM_ID] + ([gain_col] if gain_col else [])
    missing = [c for c in need if c not in events.columns]
    if missing:
        raise DataError(f"Missed columns {missing}")
    users = events[C.USER_ID].to_numpy(dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise DataError(f"user index out of range 0..{n_users - 1}: "
                        f"{users.min() if users.min() < 0 else users.max()}")
    order = np.argsort(users, kind="stable")
    cuts = np.cumsum(np.bincount(users, minlength=n_users))[:-1]
    items = np.split(events[C.ITEM_ID].to_numpy(dtype=np.int64)[order], cuts)
    if gain_col is None:
        return items, None
    return items, np.split(events[gain_col].to_numpy(dtype=np.float64)[order], cuts)
