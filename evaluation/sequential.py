"""Always-valid sequential inference for daily looks: the mixture SPRT (mSPRT) of Johari, Koomen,
Pekelis & Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests" (2017/2022).

A fixed-horizon p-value is valid at one pre-planned look only; checking it every day and
stopping at the first p < 0.05 inflates the false-positive rate (about 4x over 14 daily looks in
docs/experiments.md). The mSPRT instead tracks, for the difference ``theta`` of a metric between
treatment and control, the likelihood ratio of "theta ~ N(0, tau^2)" against "theta = 0". With
the estimate ``theta_hat`` and its variance ``s^2`` at a look (normal by the CLT),

    Lambda = sqrt(s^2 / (s^2 + tau^2)) * exp(tau^2 theta_hat^2 / (2 s^2 (s^2 + tau^2))),

which for balanced arms of n units and per-pair variance V is Johari et al.'s
``sqrt(V / (V + n tau^2)) exp(n^2 tau^2 theta_hat^2 / (2 V (V + n tau^2)))``. Under H0 Lambda is
a martingale with mean 1, so by Ville's inequality P(sup Lambda >= 1/alpha) <= alpha: the
always-valid p-value ``p_n = min(p_{n-1}, 1 / Lambda_n)`` can be read at every look, and
rejecting when it drops below alpha keeps the false-positive rate <= alpha at any stopping time.
Inverting the test gives the confidence sequence, intersected over looks.

``tau^2`` (the prior spread of true effects) only moves power, never validity, as long as it is
fixed before the data arrive; ``horizon_tau2`` picks the value that makes the confidence
sequence tightest at the planned last look.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize

from evaluation.experiment_stats import METRICS, VARIANT, day_index, metric_moments, unit_table
from recsys.errors import ConfigError, DataError

Array = npt.NDArray[np.float64]

MIN_UNITS = 100
"""Units per arm (with a positive denominator) before a daily look is read; see sequential_test."""


class SequentialResult(NamedTuple):
    """Per look (last axis): always-valid p-value (non-increasing), confidence sequence bounds
    (running intersection, so they only narrow) and the log mixture likelihood ratio."""

    p_value: Array
    ci_low: Array
    ci_high: Array
    log_lr: Array


def msprt(
    theta_hat: npt.ArrayLike, var_hat: npt.ArrayLike, tau2: float, *, alpha: float = 0.05,
    theta0: float = 0.0,
) -> SequentialResult:
    """mSPRT with a ``N(theta0, tau2)`` mixture over a sequence of looks on the last axis.

    ``theta_hat`` is the cumulative estimate (treatment minus control) at each look, ``var_hat``
    its variance (``se2_t + se2_c``). Leading axes are independent experiments, so a
    (experiments, looks) stack is tested in one call. A look without data (NaN or zero variance)
    leaves the p-value and the sequence unchanged.

    >>> res = msprt([0.01, 0.02, 0.03], [1e-4, 5e-5, 2.5e-5], tau2=2e-4)
    >>> bool(res.p_value[-1] < 0.05), bool(res.ci_low[-1] > 0)
    (True, True)
    """
    if not tau2 > 0:
        raise ConfigError(f"tau2 must be > 0, got {tau2}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    theta = np.asarray(theta_hat, dtype=np.float64)
    var = np.asarray(var_hat, dtype=np.float64)
    theta, var = np.broadcast_arrays(theta, var)
    ok = np.isfinite(theta) & np.isfinite(var) & (var > 0)
    s2 = np.where(ok, var, 1.0)
    centred = np.where(ok, theta - theta0, 0.0)
    log_lr = 0.5 * np.log(s2 / (s2 + tau2)) + tau2 * centred**2 / (2 * s2 * (s2 + tau2))
    log_lr = np.where(ok, log_lr, 0.0)
    p_value = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_lr, axis=-1)))
    # {theta0 : Lambda(theta0) < 1/alpha} is theta_hat +- radius.
    radius = np.sqrt(s2 * (s2 + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log1p(tau2 / s2)))
    low = np.where(ok, theta - radius, -np.inf)
    high = np.where(ok, theta + radius, np.inf)
    return SequentialResult(
        p_value=p_value, ci_low=np.maximum.accumulate(low, axis=-1),
        ci_high=np.minimum.accumulate(high, axis=-1), log_lr=log_lr,
    )


def horizon_tau2(var_at_horizon: float, alpha: float = 0.05) -> float:
    """The ``tau^2`` whose confidence sequence is narrowest when ``Var(theta_hat)`` has shrunk to
    ``var_at_horizon`` (its planned value at the last look, e.g. ``2 sigma^2 / n_per_arm`` with
    sigma^2 from pre-experiment or A/A data).

    With ``u = tau^2 / s^2`` the squared half-width is
    ``s^2 (1 + 1/u) (2 log(1/alpha) + log(1 + u))``, minimised where
    ``u = 2 log(1/alpha) + log(1 + u)`` (u ~ 8.2 at alpha = 0.05), solved with ``scipy.optimize``.
    Fix it before the experiment starts: re-estimating it from the running data would void the
    martingale argument.
    """
    if not var_at_horizon > 0:
        raise ConfigError(f"var_at_horizon must be > 0, got {var_at_horizon}")
    level = 2 * math.log(1 / alpha)
    u = optimize.brentq(lambda x: x - level - math.log1p(x), level, 10 * level + 10)
    return float(u * var_at_horizon)


def sequential_test(
    frame: pd.DataFrame, metric: str, *, treatment: str, tau2: float,
    control: str = "control", alpha: float = 0.05, min_units: int = MIN_UNITS,
) -> pd.DataFrame:
    """Daily always-valid readout of ``metric`` for ``treatment`` against ``control``.

    ``frame`` has per-unit-and-day rows (a ``day`` or ``timestamp`` column); look ``d`` uses all
    rows up to and including day ``d``. A look is read only once each arm has ``min_units`` units
    with a positive denominator (``ready``): before that the normal approximation behind the
    mSPRT is poor (a ratio metric over a handful of orders has a wildly underestimated variance)
    and the p-value stays where it was. One output row per look: day, units_control,
    units_treatment, control, treatment, diff, se, ready, p_value (always valid), cs_low, cs_high
    (confidence sequence for the difference) and reject (p_value < alpha). Stopping at the first
    reject and reading on to the planned horizon are both valid.

    >>> sequential_test(frame, "ctr", treatment="b", tau2=horizon_tau2(4e-6))  # doctest: +SKIP
    """
    if metric not in METRICS:
        raise ConfigError(f"Unknown metric {metric!r}; known: {list(METRICS)}")
    if min_units < 2:
        raise ConfigError(f"min_units must be >= 2, got {min_units}")
    variants = set(frame[VARIANT].unique()) if VARIANT in frame.columns else set()
    for name in (control, treatment):
        if name not in variants:
            raise DataError(f"Variant {name!r} not in {sorted(variants)}")
    rows = []
    for day in np.sort(day_index(frame).unique()):
        mom = metric_moments(unit_table(frame, until=day), metric).reindex([control, treatment])
        mom = mom.fillna({"n": 0.0, "support": 0.0})
        ctl, trt = mom.loc[control], mom.loc[treatment]
        rows.append({"day": day, "units_control": int(ctl.n), "units_treatment": int(trt.n),
                     "control": ctl.value, "treatment": trt.value, "diff": trt.value - ctl.value,
                     "var": ctl.se2 + trt.se2, "ready": min(ctl.support, trt.support) >= min_units})
    out = pd.DataFrame(rows)
    var = np.where(out["ready"], out["var"], np.nan)
    res = msprt(out["diff"].to_numpy(), var, tau2, alpha=alpha)
    out["se"] = np.sqrt(out.pop("var"))
    out["p_value"], out["cs_low"], out["cs_high"] = res.p_value, res.ci_low, res.ci_high
    out["reject"] = res.p_value < alpha
    return out
