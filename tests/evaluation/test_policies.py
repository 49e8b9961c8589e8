from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.policies import (
    deterministic_policy,
    plackett_luce_policy,
    position_marginals,
    uniform_policy,
)
from recsys.errors import ConfigError, DataError


def _rows(items: list[int], positions: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": items, "position": positions})


def test_uniform_and_deterministic() -> None:
    rows = _rows([3, 3, 1], [1, 2, 2])
    np.testing.assert_allclose(uniform_policy(4)(rows), 0.25)
    rank = deterministic_policy(lambda r: np.tile([3, 1, 0], (len(r), 1)))
    # row 0: item 3 at 1 -> shown; row 1: item 3 at 2 -> slot 2 holds 1; row 2: 1 at 2 -> shown
    np.testing.assert_allclose(rank(rows), [1.0, 0.0, 1.0])
    with pytest.raises(DataError, match="position 3"):
        deterministic_policy(lambda r: np.tile([3, 1], (len(r), 1)))(_rows([0], [3]))
    with pytest.raises(ConfigError):
        uniform_policy(0)


def test_plackett_luce_hand_computed() -> None:
    # p = [0.5, 0.3, 0.2] over 3 items
    p = np.tile([0.5, 0.3, 0.2], (3, 1))
    # item 2 at position 2: 0.5 * 0.2/0.5 + 0.3 * 0.2/0.7 = 0.2 + 0.085714 = 0.285714
    # item 2 at position 3: 1 - P(at 1) - P(at 2) = 1 - 0.2 - 0.285714 = 0.514286
    out = position_marginals(p, np.array([2, 2, 2]), np.array([1, 2, 3]))
    np.testing.assert_allclose(out, [0.2, 0.285714, 0.514286], atol=1e-6)


def test_plackett_luce_equal_scores_is_uniform_and_matches_sampling() -> None:
    n = 80
    flat = plackett_luce_policy(lambda r: np.zeros((len(r), n)))
    np.testing.assert_allclose(flat(_rows([5, 5, 5], [1, 2, 3])), 1 / n)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=7)
    policy = plackett_luce_policy(lambda r: np.tile(scores, (len(r), 1)), temperature=0.7)
    items, positions = np.tile(np.arange(7), 3), np.repeat([1, 2, 3], 7)
    exact = policy(_rows(items.tolist(), positions.tolist())).reshape(3, 7)
    np.testing.assert_allclose(exact.sum(axis=1), 1.0)            # each slot holds one item
    # Gumbel-top-k draws sample Plackett-Luce rankings exactly
    logits = scores / 0.7
    draws = np.argsort(-(logits + rng.gumbel(size=(300_000, 7))), axis=1)[:, :3]
    sampled = np.stack([np.bincount(draws[:, k], minlength=7) / len(draws) for k in range(3)])
    np.testing.assert_allclose(exact, sampled, atol=4e-3)
    with pytest.raises(DataError, match="positions 1..3"):
        flat(_rows([0], [4]))
