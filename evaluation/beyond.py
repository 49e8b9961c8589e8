"""Beyond accuracy: diversity, coverage, exposure concentration, novelty, serendipity.

Accurate lists can still be monotonous (one category), narrow (a few best-sellers for everyone)
or obvious (what the popularity baseline would show anyway). These metrics measure that.
Per-list metrics return one float per user (NaN where undefined, e.g. fewer than two items for
a pairwise diversity); catalogue-level ones return a single float. Definitions and formulas are
in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from evaluation.lists import PAD, check_recs, n_shown
from evaluation.ranking import judge
from recsys.errors import DataError

_CHUNK_USERS = 4096  # bounds the (users x k x k) pairwise blocks in memory


def _pair_mask(valid: np.ndarray) -> np.ndarray:
    """(users x k x k) mask of distinct pairs i < j of non-empty slots."""
    k = valid.shape[1]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    return valid[:, :, None] & valid[:, None, :] & upper


def _mean_over_pairs(values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    n_pairs = pairs.sum(axis=(1, 2))
    out = np.full(len(values), np.nan)
    np.divide((values * pairs).sum(axis=(1, 2)), n_pairs, out=out, where=n_pairs > 0)
    return out


def ild_category(recs: ArrayLike, item_category: Iterable[Hashable], k: int) -> np.ndarray:
    """Intra-list diversity by category: share of distinct item pairs in the top-k whose
    categories differ (0 = one category, 1 = all different). NaN with fewer than 2 items.

    ``item_category[i]`` is item i's category (any hashable; missing is its own category).
    """
    cats = pd.factorize(pd.Series(list(item_category), dtype=object),
                        use_na_sentinel=False)[0]
    top = check_recs(recs, k, n_items=len(cats))
    valid = top != PAD
    codes = np.where(valid, cats[np.where(valid, top, 0)], -1)
    differ = codes[:, :, None] != codes[:, None, :]
    return _mean_over_pairs(differ, _pair_mask(valid))


def ild_embedding(recs: ArrayLike, embeddings: ArrayLike, k: int) -> np.ndarray:
    """Intra-list diversity by embedding: mean over distinct pairs of (1 - cosine similarity).
    NaN with fewer than 2 items. Recommended items must have non-zero embeddings."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise DataError(f"embeddings must be 2-D (items x dim), got shape {emb.shape}")
    top = check_recs(recs, k, n_items=len(emb))
    norms = np.linalg.norm(emb, axis=1)
    used = np.unique(top[top != PAD])
    zero = used[norms[used] == 0]
    if len(zero):
        raise DataError(f"item {zero[0]} has a zero embedding: cosine is undefined")
    unit = emb / np.where(norms > 0, norms, 1.0)[:, None]
    out = np.empty(len(top))
    for lo in range(0, len(top), _CHUNK_USERS):
        block = top[lo:lo + _CHUNK_USERS]
        valid = block != PAD
        vec = unit[np.where(valid, block, 0)]
        cos = np.einsum("ukd,uld->ukl", vec, vec)
        out[lo:lo + _CHUNK_USERS] = _mean_over_pairs(1.0 - cos, _pair_mask(valid))
    return out


def exposure(recs: ArrayLike, n_items: int, k: int) -> np.ndarray:
    """How many lists show each item in their top-k (int, n_items)."""
    top = check_recs(recs, k, n_items=n_items)
    return np.bincount(top[top != PAD], minlength=n_items)


def catalog_coverage(recs: ArrayLike, n_items: int, k: int) -> float:
    """Share of the catalogue recommended to at least one user in the top-k."""
    return float((exposure(recs, n_items, k) > 0).mean())


def gini_exposure(recs: ArrayLike, n_items: int, k: int) -> float:
    """Gini coefficient of item exposure over the whole catalogue (never-shown items count 0).

    G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i), x sorted ascending, i = 1..n: 0 when every
    item is shown equally often, (n - 1) / n when one item takes all exposure.
    """
    x = np.sort(exposure(recs, n_items, k)).astype(float)
    total = x.sum()
    if total == 0:
        return float("nan")
    i = np.arange(1, n_items + 1)
    return float(((2 * i - n_items - 1) * x).sum() / (n_items * total))


def popularity_share(train_items: ArrayLike, n_items: int,
                     train_users: ArrayLike | None = None) -> np.ndarray:
    """p(i) from the training log: with ``train_users``, the share of training users who
    interacted with item i (Zhou et al. 2010); without, i's share of all interactions."""
    items = np.asarray(train_items, dtype=np.int64)
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise DataError(f"train item ids must be in 0..{n_items - 1}")
    if train_users is None:
        return np.bincount(items, minlength=n_items) / max(len(items), 1)
    users = np.asarray(train_users, dtype=np.int64)
    if len(users) != len(items):
        raise DataError(f"train_users has {len(users)} rows, train_items {len(items)}")
    pairs = np.unique(np.stack([users, items]), axis=1)
    n_users = len(np.unique(users))
    return np.bincount(pairs[1], minlength=n_items) / max(n_users, 1)


def _mean_over_shown(values: np.ndarray, top: np.ndarray) -> np.ndarray:
    valid = top != PAD
    shown = n_shown(top)
    total = np.where(valid, values[np.where(valid, top, 0)], 0.0).sum(axis=1)
    out = np.full(len(top), np.nan)
    np.divide(total, shown, out=out, where=shown > 0)
    return out


def novelty(recs: ArrayLike, share: ArrayLike, k: int) -> np.ndarray:
    """Mean self-information -log2 p(i) of the recommended items (bits; higher = less known).

    ``share`` is p(i) from :func:`popularity_share`. An item unseen in training (p = 0) is
    scored as the rarest seen item (smallest positive p), instead of an infinite surprise.
    """
    p = np.asarray(share, dtype=np.float64)
    top = check_recs(recs, k, n_items=len(p))
    if not (p > 0).any():
        raise DataError("share has no positive value: popularity is undefined")
    bits = -np.log2(np.where(p > 0, p, p[p > 0].min()))
    return _mean_over_shown(bits, top)


def mean_popularity(recs: ArrayLike, popularity: ArrayLike, k: int) -> np.ndarray:
    """Mean popularity (a count or a share, as given) of the recommended items, per user."""
    pop = np.asarray(popularity, dtype=np.float64)
    return _mean_over_shown(pop, check_recs(recs, k, n_items=len(pop)))


def serendipity(recs: ArrayLike, relevant: Sequence[ArrayLike], baseline_recs: ArrayLike,
                k: int) -> np.ndarray:
    """Share of the top-k that is relevant AND absent from the baseline's top-k for that user
    (Ge et al. 2010, with the popularity model as the "obvious" baseline). Divides by k like
    precision; NaN for users without relevant items."""
    j = judge(recs, relevant, k)
    top = check_recs(recs, k)
    base = check_recs(baseline_recs, k)
    if base.shape[0] != top.shape[0]:
        raise DataError(f"baseline_recs has {base.shape[0]} rows, recs {top.shape[0]}")
    expected = ((top[:, :, None] == base[:, None, :]) & (base[:, None, :] != PAD)).any(axis=2)
    value = (j.hits & ~expected).sum(axis=1) / k
    return np.where(j.n_relevant > 0, value, np.nan)
