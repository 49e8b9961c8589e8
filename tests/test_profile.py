"""The training profile that drift monitoring compares live traffic with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.profile import SCORE, FeatureProfile, psi, top_rows


def test_psi_is_zero_for_the_same_sample_and_grows_with_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(0, 1, 5000), rng.random(5000)])
    profile = FeatureProfile.fit(train, ["a", "b"], rng.normal(size=5000))
    same = profile.psi(train, ["a", "b"], rng.normal(size=5000))
    assert all(v < 0.01 for v in same.values()) and set(same) == {"a", "b", SCORE}
    shifted = train.copy()
    shifted[:, 0] += 1.0                                 # one standard deviation
    out = profile.psi(shifted, ["a", "b"], rng.normal(size=5000))
    assert out["a"] > 0.25 and out["b"] < 0.01
    missing = train.copy()
    missing[:, 1] = np.nan                               # a feature that stopped
    assert profile.psi(missing, ["a", "b"], rng.normal(size=5000))["b"] > 1
    profile.save(tmp_path)
    again = FeatureProfile.load(tmp_path)
    assert again.psi(shifted, ["a", "b"], rng.normal(size=5000))["a"] == pytest.approx(out["a"])


def test_psi_of_known_shares() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5))


def test_top_rows_per_query() -> None:
    scores = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    assert top_rows(scores, np.array([3, 2]), k=2).tolist() == [1, 2, 3, 4]


def test_the_bundle_carries_a_profile_and_serving_can_read_features(tiny_bundle: Path) -> None:
    from recsys.context import Request
    from recsys.history import UserEvents
    from recsys.recommender import HybridRecommender

    rec = HybridRecommender.load(tiny_bundle)
    assert rec.profile is not None and rec.profile.rows > 0
    user = rec.sample_users(1)[0]
    response = rec.recommend(Request(user_id=user, k=5), with_features=True)
    assert response.features is not None and response.scores is not None
    assert response.features.shape == (5, len(rec.features.names))
    drift = rec.profile.psi(response.features, rec.features.names, response.scores)
    assert set(drift) == set(rec.profile.shares)
    # a history passed in replaces the stored one (live events): an empty one = unknown user
    alone = rec.recommend(Request(user_id="nobody-yet", k=5), history=UserEvents.empty())
    assert alone.fallback
