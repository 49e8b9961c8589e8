from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from evaluation.bootstrap import bootstrap_ci, paired_test, resample_indices
from recsys.errors import ConfigError, DataError


def _coverage(draw: Callable[[np.random.Generator], np.ndarray], truth: float, runs: int,
              seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for s in range(runs):
        ci = bootstrap_ci(draw(rng), n_resamples=500, seed=s)
        hits += ci.low <= truth <= ci.high
    return hits / runs


def test_ci_covers_true_mean_at_nominal_rate() -> None:
    # per-user hit indicators, Bernoulli(0.3), 200 users: the 95% percentile interval should
    # cover the true mean in about 95% of seeded datasets (SE of the rate over 400 runs ~ 0.011)
    rate = _coverage(lambda rng: (rng.random(200) < 0.3).astype(float), 0.3, 400, seed=123)
    assert 0.92 <= rate <= 0.975


def test_ci_covers_skewed_metric() -> None:
    # revenue-like, right-skewed (exponential, mean 1), 300 users: the percentile bootstrap
    # under-covers a little on skewed data, hence the lower bound 0.90
    rate = _coverage(lambda rng: rng.exponential(1.0, 300), 1.0, 300, seed=7)
    assert 0.90 <= rate <= 0.98


def test_matches_scipy_bootstrap_and_is_seeded() -> None:
    v = np.random.default_rng(0).gamma(2.0, 1.0, 500)
    ci = bootstrap_ci(v, n_resamples=4000, seed=1)
    ref = stats.bootstrap((v,), np.mean, n_resamples=4000, method="percentile",
                          random_state=2).confidence_interval
    assert ci.low == pytest.approx(ref.low, abs=0.02) and ci.high == pytest.approx(ref.high,
                                                                                   abs=0.02)
    assert bootstrap_ci(v, seed=5) == bootstrap_ci(v, seed=5)
    # NaN users are skipped; the block size does not change the draws
    with_nan = np.concatenate([v, [np.nan] * 10])
    assert bootstrap_ci(with_nan, seed=3) == bootstrap_ci(v, seed=3)
    blocks = list(resample_indices(5, 7, seed=0))
    assert sum(len(b) for b in blocks) == 7


def _users(n: int, seed: int) -> np.ndarray:
    # per-user base level varies a lot between users; models differ only slightly
    return np.random.default_rng(seed).uniform(0, 1, n)


@pytest.mark.parametrize("method", ["bootstrap", "t", "wilcoxon"])
def test_paired_detects_real_difference(method: str) -> None:
    rng = np.random.default_rng(11)
    base = _users(1000, 1)
    a = base + 0.03 + rng.normal(0, 0.1, 1000)
    b = base + rng.normal(0, 0.1, 1000)
    res = paired_test(a, b, method=method)  # type: ignore[arg-type]
    assert res.significant and res.p_value < 0.01
    assert res.low < res.diff < res.high and res.low > 0
    assert res.diff == pytest.approx(np.mean(a - b))


@pytest.mark.parametrize("method", ["bootstrap", "t", "wilcoxon"])
def test_paired_null_false_positive_rate(method: str) -> None:
    # same model twice up to noise: "significant" at alpha = 0.05 in about 5% of datasets
    rng = np.random.default_rng(5)
    runs, flagged = 200, 0
    for s in range(runs):
        base = _users(150, s)
        res = paired_test(base + rng.normal(0, 0.1, 150), base + rng.normal(0, 0.1, 150),
                          method=method, n_resamples=500, seed=s)  # type: ignore[arg-type]
        flagged += res.significant
    assert flagged / runs <= 0.10


def test_paired_edge_cases() -> None:
    a = np.array([0.5, np.nan, 0.2, 0.9])
    b = np.array([0.4, 0.1, np.nan, 0.7])
    res = paired_test(a, b)
    assert res.n == 2 and res.diff == pytest.approx(0.15)  # users 0 and 3 only
    same = np.linspace(0, 1, 20)
    for method in ("bootstrap", "t", "wilcoxon"):
        r = paired_test(same, same, method=method)
        assert r.diff == 0 and not r.significant and r.p_value == 1.0
    with pytest.raises(DataError, match="same users"):
        paired_test([1, 2, 3], [1, 2])
    with pytest.raises(DataError, match="at least 2"):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(ConfigError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(ConfigError, match="method"):
        paired_test([1.0, 2.0], [0.0, 1.0], method="z")  # type: ignore[arg-type]
