"""Evaluation policies for OPE, as :data:`evaluation.ope.PositionPolicy` callables.

OPE needs, for every logged row, the probability pi_e(a | x, k) that the policy would have
shown the logged item a at the logged position k. These adapters turn the usual ways of
describing a ranker into that probability:

* :func:`uniform_policy`: every item equally likely at every position (1 / n_items).
* :func:`deterministic_policy`: a ranker's list per row; 1 if it puts a at k, else 0.
* :func:`plackett_luce_policy`: a softmax over item scores, sampling a ranking without
  replacement (Plackett-Luce); the position marginal is computed exactly for k <= 3, the
  Open Bandit interface's three slots.

Example::

    log = load_open_bandit(root, "random", "all")
    top3 = lambda rows: np.tile([12, 5, 40], (len(rows), 1))   # same list for everyone
    evaluate_policy(log, deterministic_policy(top3))["snips"].value
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from evaluation.ope import PositionPolicy
from recsys.errors import ConfigError, DataError

MAX_PL_POSITION = 3
_CHUNK_ROWS = 512  # bounds the (rows x items x items) block of the position-3 marginal


def _logged(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    items = rows["item_id"].to_numpy(dtype=np.int64)
    positions = rows["position"].to_numpy(dtype=np.int64)
    return items, positions


def uniform_policy(n_items: int) -> PositionPolicy:
    """The uniform-random ranker: 1 / n_items for any item at any position."""
    if n_items < 1:
        raise ConfigError(f"n_items must be >= 1, got {n_items}")

    def probs(rows: pd.DataFrame) -> np.ndarray:
        return np.full(len(rows), 1.0 / n_items)

    return probs


def deterministic_policy(rank: Callable[[pd.DataFrame], ArrayLike]) -> PositionPolicy:
    """Wrap a ranker returning, per row, its ranked item ids (rows x L, L >= max position)."""

    def probs(rows: pd.DataFrame) -> np.ndarray:
        items, positions = _logged(rows)
        ranking = np.asarray(rank(rows), dtype=np.int64)
        if ranking.ndim != 2 or ranking.shape[0] != len(rows):
            raise DataError(f"ranker must return (rows x L) item ids for {len(rows)} rows, "
                            f"got shape {ranking.shape}")
        if len(rows) and positions.max() > ranking.shape[1]:
            raise DataError(f"ranker returned {ranking.shape[1]} items per row but the log "
                            f"has position {positions.max()}")
        shown = ranking[np.arange(len(rows)), positions - 1]
        return (shown == items).astype(np.float64)

    return probs


def position_marginals(p: np.ndarray, items: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """P(item at position) under Plackett-Luce sampling with first-draw probabilities ``p``.

    ``p`` is (rows x items), rows summing to 1. Exact sums over the items drawn before:
    k=1: p_a; k=2: sum_{b!=a} p_b p_a / (1 - p_b);
    k=3: sum_{b!=c, both !=a} p_b p_c / (1 - p_b) * p_a / (1 - p_b - p_c).
    """
    if len(positions) and (positions.min() < 1 or positions.max() > MAX_PL_POSITION):
        raise DataError(f"Plackett-Luce marginals are computed for positions 1..{MAX_PL_POSITION}"
                        f", got {positions.min()}..{positions.max()}")
    out = np.empty(len(items))
    for lo in range(0, len(items), _CHUNK_ROWS):
        q = p[lo:lo + _CHUNK_ROWS]
        a = items[lo:lo + _CHUNK_ROWS]
        k = positions[lo:lo + _CHUNK_ROWS]
        r = np.arange(len(q))
        pa = q[r, a]
        first = q / np.clip(1.0 - q, 1e-300, None)  # p_b / (1 - p_b)
        at2 = pa * (first.sum(axis=1) - first[r, a])
        at3 = np.zeros(len(q))
        if (k == 3).any():
            at3[k == 3] = _third(q[k == 3], a[k == 3])
        out[lo:lo + _CHUNK_ROWS] = np.select([k == 1, k == 2], [pa, at2], at3)
    return out


def _third(q: np.ndarray, a: np.ndarray) -> np.ndarray:
    """P(a at position 3) for each row of q (rows x items)."""
    r = np.arange(len(q))
    pa = q[r, a]
    first = q / np.clip(1.0 - q, 1e-300, None)  # p_b / (1 - p_b)
    remain = np.clip(1.0 - q[:, :, None] - q[:, None, :], 1e-300, None)
    pair = first[:, :, None] * q[:, None, :] * pa[:, None, None] / remain
    idx = np.arange(q.shape[1])
    pair[:, idx, idx] = 0.0
    pair[r, a, :] = 0.0
    pair[r, :, a] = 0.0
    return pair.sum(axis=(1, 2))


def plackett_luce_policy(score: Callable[[pd.DataFrame], ArrayLike],
                         temperature: float = 1.0) -> PositionPolicy:
    """A softmax ranker: per row, ``score`` gives (rows x n_items) scores; the ranking is drawn
    item by item without replacement with probabilities softmax(score / temperature)."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")

    def probs(rows: pd.DataFrame) -> np.ndarray:
        items, positions = _logged(rows)
        s = np.asarray(score(rows), dtype=np.float64) / temperature
        if s.ndim != 2 or s.shape[0] != len(rows):
            raise DataError(f"score must return (rows x n_items) for {len(rows)} rows, "
                            f"got shape {s.shape}")
        if len(items) and items.max() >= s.shape[1]:
            raise DataError(f"logged item {items.max()} has no score ({s.shape[1]} columns)")
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return position_marginals(e / e.sum(axis=1, keepdims=True), items, positions)

    return probs
