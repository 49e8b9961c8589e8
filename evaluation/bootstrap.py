"""Uncertainty over users: bootstrap confidence intervals and paired model comparisons.

A metric mean over a few thousand users moves by chance; these functions say by how much.
Users are the resampling unit (they are the independent draws; items within a list are not).
All functions take per-user arrays as returned by :mod:`evaluation.ranking` and friends, skip
NaN (users where the metric is undefined) and are seeded, so a report is reproducible.

Example::

    ci = bootstrap_ci(per_user["ndcg@10"])                  # Interval(estimate, low, high, ...)
    test = paired_test(model_a["ndcg@10"], model_b["ndcg@10"])
    test.significant, test.diff, (test.low, test.high), test.p_value
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from recsys.errors import ConfigError, DataError

PairedMethod = Literal["bootstrap", "t", "wilcoxon"]

_CELLS_PER_CHUNK = 4_000_000  # resamples x users per block: ~32 MB of int64 indices


@dataclass(frozen=True)
class Interval:
    """A point estimate with its (1 - alpha) confidence interval."""

    estimate: float
    low: float
    high: float
    n: int
    alpha: float


@dataclass(frozen=True)
class PairedTest:
    """Model A minus model B on the same users: mean difference, its CI, and a p-value."""

    diff: float
    low: float
    high: float
    p_value: float
    significant: bool
    n: int
    alpha: float
    method: str


def _check(n_resamples: int, alpha: float) -> None:
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")


def resample_indices(n: int, n_resamples: int, seed: int | np.random.Generator,
                     ) -> Iterator[np.ndarray]:
    """Yield blocks (b x n) of bootstrap row indices, n_resamples rows in total.

    Blocks keep memory bounded while each block is one vectorised draw; the same seed always
    gives the same resamples, whatever the block size.
    """
    rng = np.random.default_rng(seed)
    per_block = max(1, _CELLS_PER_CHUNK // max(n, 1))
    done = 0
    while done < n_resamples:
        b = min(per_block, n_resamples - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def bootstrap_means(values: np.ndarray, n_resamples: int,
                    seed: int | np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples of ``values`` (1-D, no NaN)."""
    return np.concatenate([values[idx].mean(axis=1)
                           for idx in resample_indices(len(values), n_resamples, seed)])


def _clean(values: ArrayLike, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if len(v) < 2:
        raise DataError(f"{name} needs at least 2 users with a defined value, got {len(v)}")
    return v


def bootstrap_ci(values: ArrayLike, *, n_resamples: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap CI of the mean of a per-user metric (NaN users skipped).

    >>> ci = bootstrap_ci([0.0, 1.0] * 50, seed=1)
    >>> round(ci.estimate, 2), ci.low < 0.5 < ci.high
    (0.5, True)
    """
    _check(n_resamples, alpha)
    v = _clean(values, "bootstrap_ci")
    means = bootstrap_means(v, n_resamples, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(v.mean()), float(low), float(high), len(v), alpha)


def paired_test(a: ArrayLike, b: ArrayLike, *, method: PairedMethod = "bootstrap",
                n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0) -> PairedTest:
    """Compare models A and B evaluated on the same users (row u of ``a`` and ``b`` = user u).

    Pairing removes the between-user variance, which usually dwarfs the model difference.
    Users where either value is NaN are dropped. ``diff`` is mean(a - b); ``significant`` is
    ``p_value < alpha``. Methods:

    * ``"bootstrap"``: percentile CI of the mean difference; two-sided p-value from the
      bootstrap distribution shifted to the null, p = (1 + #{|d* - d| >= |d|}) / (B + 1).
    * ``"t"``: paired t-test (``scipy.stats.ttest_rel``) with its t-interval.
    * ``"wilcoxon"``: signed-rank test (``scipy.stats.wilcoxon``; tests a shift of the
      paired differences, robust to outliers) with the bootstrap CI of the mean difference.
    """
    _check(n_resamples, alpha)
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise DataError(f"paired_test needs the same users: a has {len(x)}, b has {len(y)}")
    ok = ~(np.isnan(x) | np.isnan(y))
    d = _clean((x - y)[ok], "paired_test")
    diff = float(d.mean())
    if method == "t":
        if np.all(d == d[0]):  # zero variance: the t statistic is undefined
            p, low, high = (1.0 if diff == 0 else 0.0), diff, diff
        else:
            res = stats.ttest_rel(x[ok], y[ok])
            ci = res.confidence_interval(1 - alpha)
            p, low, high = float(res.pvalue), float(ci.low), float(ci.high)
    elif method in ("bootstrap", "wilcoxon"):
        means = bootstrap_means(d, n_resamples, seed)
        low, high = (float(q) for q in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
        if method == "bootstrap":
            extreme = np.count_nonzero(np.abs(means - diff) >= abs(diff))
            p = (1 + extreme) / (n_resamples + 1)
        elif not d.any():  # all differences zero: no evidence of a shift
            p = 1.0
        else:
            p = float(stats.wilcoxon(d).pvalue)
    else:
        raise ConfigError(f"method must be one of bootstrap, t, wilcoxon; got {method!r}")
    return PairedTest(diff, low, high, float(p), bool(p < alpha), len(d), alpha, method)


def paired_lift(a: ArrayLike, b: ArrayLike, *, n_resamples: int = 2000, alpha: float = 0.05,
                seed: int = 0) -> Interval:
    """Relative lift of A over B on the same users, mean(a) / mean(b) - 1, with the percentile
    CI of the ratio over paired resamples of users (both means from the same rows). Users
    where either value is NaN are dropped.

    >>> lift = paired_lift([2.0, 2.0, 4.0, 4.0] * 25, [1.0, 2.0, 2.0, 3.0] * 25)
    >>> round(lift.estimate, 2), lift.low > 0
    (0.5, True)
    """
    _check(n_resamples, alpha)
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise DataError(f"paired_lift needs the same users: a has {len(x)}, b has {len(y)}")
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2 or y.mean() <= 0:
        raise DataError(f"paired_lift needs at least 2 users and a positive baseline mean "
                        f"(got {len(x)} users, baseline mean {y.mean() if len(y) else 0:g})")
    ratios = np.concatenate([x[idx].mean(axis=1) / np.maximum(y[idx].mean(axis=1), 1e-300)
                             for idx in resample_indices(len(x), n_resamples, seed)])
    low, high = np.quantile(ratios - 1, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean() / y.mean() - 1), float(low), float(high), len(x), alpha)
