"""Fixed-horizon statistics for A/B experiment readouts: per-variant aggregates, lift against
control with 95% intervals, the sample-ratio-mismatch check and the guardrails.

Input is one row per experiment unit (the user or session that bucketing assigned), or one row
per unit and day; ``unit_table`` collapses the day rows. Units, not impressions, are the
independent draws, which decides the two kinds of metric:

* per-unit means (conversion rate, add-to-cart rate, revenue per unit): Welch's t-test;
* ratio metrics (CTR = clicks / impressions, AOV = revenue / orders), whose numerator and
  denominator are both random per unit: the delta method on per-unit sums. A binomial test over
  impressions would treat a heavy user's 50 correlated impressions as 50 independent ones.

Daily looks live in ``sequential.py``, CUPED in ``cuped.py``, sample sizes in ``planning.py``;
the formulas and the A/A proof in ``docs/experiments.md``. Distributions come from
``scipy.stats`` (t, normal, ``chisquare``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from evaluation.cuped import cuped_adjust
from recsys.columns import TIMESTAMP
from recsys.errors import ConfigError, DataError

Array = npt.NDArray[np.float64]

VARIANT = "variant"
UNIT = "unit"
DAY = "day"
EXPOSURES = "exposures"
IMPRESSIONS = "impressions"
CLICKS = "clicks"
CARTS = "carts"
PURCHASES = "purchases"
REVENUE = "revenue"
ORDERS = "orders"
COUNT_COLUMNS: tuple[str, ...] = (EXPOSURES, IMPRESSIONS, CLICKS, CARTS, PURCHASES, REVENUE, ORDERS)

SRM_P_THRESHOLD = 0.001
"""SRM alarm level: at 0.001 a correctly split experiment raises a false alarm once in 1,000
readouts, while a 52/48 skew on 20k units gives p ~ 1e-8 at its expected counts and is flagged in
99% of simulated seeds (docs/experiments.md)."""


@dataclass(frozen=True)
class Metric:
    """A readout metric: ``sum(numerator) / sum(denominator)`` over a variant's units.

    ``denominator=None`` makes it a per-unit mean (the denominator is 1 per unit), and
    ``indicator`` counts a unit's numerator as 1 when it is > 0 (a conversion-type rate).
    """

    name: str
    numerator: str
    denominator: str | None = None
    indicator: bool = False

    @property
    def is_ratio(self) -> bool:
        return self.denominator is not None


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("ctr", CLICKS, IMPRESSIONS),
    # Units with >= 1 cart / units, the same per-unit reading as the conversion rate.
    Metric("add_to_cart_rate", CARTS, indicator=True),
    Metric("conversion_rate", PURCHASES, indicator=True),
    Metric("revenue_per_unit", REVENUE),
    Metric("aov", REVENUE, ORDERS),
)}


def day_index(frame: pd.DataFrame) -> pd.Series:
    """The look a row belongs to: the ``day`` column, else ``timestamp`` floored to the day."""
    if DAY in frame.columns:
        return frame[DAY]
    if TIMESTAMP in frame.columns:
        return pd.to_datetime(frame[TIMESTAMP]).dt.floor("D")
    raise DataError(
        f"Daily looks need a '{DAY}' or '{TIMESTAMP}' column, got {list(frame.columns)}")


def unit_table(
    frame: pd.DataFrame, *, pre_columns: Sequence[str] = (), until: object | None = None
) -> pd.DataFrame:
    """Collapse per-unit (or per-unit-and-day) rows to one row per unit, counts summed.

    ``until`` keeps only rows whose day is <= it: the data as it stood at that daily look.
    ``pre_columns`` (CUPED covariates) are per-unit constants and are carried, not summed.
    Raises ``DataError`` for a missing column, a negative or non-finite count, or a unit seen in
    two variants (an assignment bug that would bias every comparison).
    """
    missing = [c for c in (VARIANT, UNIT, *COUNT_COLUMNS, *pre_columns) if c not in frame.columns]
    if missing:
        raise DataError(f"Missed columns {missing} in the experiment frame")
    if until is not None:
        frame = frame[(day_index(frame) <= until).to_numpy()]
    try:
        counts = frame[list(COUNT_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"Count columns {list(COUNT_COLUMNS)} must be numeric: {exc}") from exc
    bad = ~np.isfinite(counts) | (counts < 0)
    if bad.any():
        column = COUNT_COLUMNS[int(np.argmax(bad.any(axis=0)))]
        raise DataError(f"Column '{column}' must be finite and >= 0 ({int(bad.sum())} bad values)")
    spread = frame.groupby(UNIT, sort=False)[[VARIANT, *pre_columns]].nunique(dropna=False)
    mixed = spread.index[(spread[VARIANT] > 1).to_numpy()]
    if len(mixed):
        raise DataError(f"{len(mixed)} units seen in more than one variant, e.g. {list(mixed[:5])}")
    varying = [c for c in pre_columns if (spread[c] > 1).any()]
    if varying:
        raise DataError(f"Pre-period columns {varying} must be constant within a unit")
    how = {c: "sum" for c in COUNT_COLUMNS} | {c: "first" for c in pre_columns}
    return frame.groupby([VARIANT, UNIT], sort=True).agg(how).reset_index()


def _unit_values(units: pd.DataFrame, metric: Metric) -> tuple[Array, Array]:
    """Per-unit numerator and denominator of ``metric`` (denominator 1 for per-unit means)."""
    y = units[metric.numerator].to_numpy(dtype=np.float64)
    if metric.indicator:
        y = (y > 0).astype(np.float64)
    if metric.denominator is None:
        return y, np.ones_like(y)
    return y, units[metric.denominator].to_numpy(dtype=np.float64)


def variant_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-variant table: units, summed counts and every metric in ``METRICS``.

    >>> variant_summary(frame).loc["control", ["units", "ctr", "conversion_rate"]]  # doctest: +SKIP
    """
    units = unit_table(frame)
    groups = units.groupby(VARIANT, sort=True)
    out = groups[list(COUNT_COLUMNS)].sum()
    out.insert(0, "units", groups.size())
    for metric in METRICS.values():
        y, d = _unit_values(units, metric)
        sums = pd.DataFrame({"y": y, "d": d}).groupby(units[VARIANT].to_numpy()).sum()
        out[metric.name] = sums["y"] / sums["d"].where(sums["d"] > 0)
    return out


def ratio_from_sums(
    n: npt.ArrayLike, sum_y: npt.ArrayLike, sum_d: npt.ArrayLike, sum_yy: npt.ArrayLike,
    sum_dd: npt.ArrayLike, sum_yd: npt.ArrayLike,
) -> tuple[Array, Array]:
    """Estimate ``R = sum_y / sum_d`` and its delta-method variance from per-unit sufficient sums.

    ``Var(R) ~ (var_y - 2 R cov_yd + R^2 var_d) / (n mean_d^2)`` (first-order Taylor expansion of
    ``mean_y / mean_d``, sample moments with ddof=1). With ``d = 1`` per unit it is exactly the
    squared standard error ``var_y / n`` of a mean, so both metric kinds share this code.
    Vectorised: any matching shapes, e.g. (experiments, looks) in the A/A simulation.
    """
    n_ = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_y, mean_d = np.asarray(sum_y) / n_, np.asarray(sum_d) / n_
        var_y = (np.asarray(sum_yy) - n_ * mean_y * mean_y) / (n_ - 1)
        var_d = (np.asarray(sum_dd) - n_ * mean_d * mean_d) / (n_ - 1)
        cov = (np.asarray(sum_yd) - n_ * mean_y * mean_d) / (n_ - 1)
        ratio = mean_y / mean_d
        se2 = (var_y - 2 * ratio * cov + ratio * ratio * var_d) / (n_ * mean_d * mean_d)
    return np.asarray(ratio), np.maximum(np.asarray(se2), 0.0)  # clip float round-off below 0


def welch_df(se2_t: npt.ArrayLike, n_t: npt.ArrayLike, se2_c: npt.ArrayLike,
             n_c: npt.ArrayLike) -> Array:
    """Welch-Satterthwaite degrees of freedom from each mean's squared standard error."""
    a, b = np.asarray(se2_t, dtype=np.float64), np.asarray(se2_c, dtype=np.float64)
    dof_t, dof_c = np.asarray(n_t, dtype=np.float64) - 1, np.asarray(n_c, dtype=np.float64) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((a + b) ** 2 / (a * a / dof_t + b * b / dof_c))


class Lift(NamedTuple):
    """Treatment minus control: absolute ``diff`` and relative ``rel`` (t/c - 1) with CIs."""

    diff: Array
    ci_low: Array
    ci_high: Array
    p_value: Array
    rel: Array
    rel_low: Array
    rel_high: Array


def lift_test(
    value_t: npt.ArrayLike, se2_t: npt.ArrayLike, value_c: npt.ArrayLike, se2_c: npt.ArrayLike,
    *, alpha: float = 0.05, df: npt.ArrayLike | None = None,
) -> Lift:
    """Two-sided test and ``1 - alpha`` intervals for two independent estimates.

    ``df=None`` uses the normal distribution (delta-method ratio metrics); a Welch ``df`` uses
    Student's t (per-unit means). The relative lift's interval is the delta method on the ratio of
    means, ``Var(t/c) ~ se2_t / c^2 + t^2 se2_c / c^4``: at readout sizes both means are nearly
    normal and far from 0, where it matches Fieller's interval at no bootstrap cost. Where the
    control mean is not significantly away from 0 (``c^2 <= q^2 se2_c``) Fieller's interval is
    unbounded, so ``rel_low``/``rel_high`` are NaN rather than a misleading finite range.
    """
    t, c = np.asarray(value_t, dtype=np.float64), np.asarray(value_c, dtype=np.float64)
    a, b = np.asarray(se2_t, dtype=np.float64), np.asarray(se2_c, dtype=np.float64)
    dist = stats.norm() if df is None else stats.t(np.asarray(df, dtype=np.float64))
    q = dist.ppf(1 - alpha / 2)
    diff = t - c
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(a + b)
        p_value = 2 * dist.sf(np.abs(diff) / se)
        rel = t / c - 1
        se_rel = np.sqrt(a / c**2 + t**2 * b / c**4)
    bounded = c * c > q * q * b
    return Lift(
        diff=diff, ci_low=diff - q * se, ci_high=diff + q * se, p_value=np.asarray(p_value),
        rel=rel, rel_low=np.where(bounded, rel - q * se_rel, np.nan),
        rel_high=np.where(bounded, rel + q * se_rel, np.nan),
    )


def _moments(variants: npt.ArrayLike, y: Array, d: Array) -> pd.DataFrame:
    """Per-variant ``n``, estimate ``value``, its squared standard error ``se2`` and ``support``,
    the units with a positive denominator (all units for a per-unit mean)."""
    sums = pd.DataFrame({"n": 1.0, "y": y, "d": d, "yy": y * y, "dd": d * d, "yd": y * d,
                         "support": (d > 0).astype(np.float64)})
    g = sums.groupby(np.asarray(variants), sort=True).sum()
    value, se2 = ratio_from_sums(g["n"], g["y"], g["d"], g["yy"], g["dd"], g["yd"])
    return pd.DataFrame({"n": g["n"], "value": value, "se2": se2, "support": g["support"]},
                        index=g.index)


def metric_moments(units: pd.DataFrame, metric: str | Metric) -> pd.DataFrame:
    """Per-variant ``n``, ``value``, ``se2`` and ``support`` of one metric from a ``unit_table``."""
    m = METRICS[metric] if isinstance(metric, str) else metric
    y, d = _unit_values(units, m)
    return _moments(units[VARIANT].to_numpy(), y, d)


def compare_variants(
    frame: pd.DataFrame, *, control: str = "control", metrics: Iterable[str] = tuple(METRICS),
    alpha: float = 0.05, cuped: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Lift of every other variant against ``control`` for each metric: one row per pair.

    Columns: variant, metric, method ("welch" or "delta"), control, treatment (the tested values),
    diff, ci_low, ci_high, rel_lift, rel_ci_low, rel_ci_high, p_value, significant,
    variance_reduction. ``cuped`` maps a per-unit metric to its pre-period column; that metric is
    tested on CUPED-adjusted values (see ``cuped.py``) and ``variance_reduction`` says how much
    the variance of the difference shrank (NaN when not adjusted).

    >>> compare_variants(frame, cuped={"revenue_per_unit": "pre_revenue"})  # doctest: +SKIP
    """
    names = list(metrics)
    cuped = dict(cuped or {})
    unknown = [n for n in [*names, *cuped] if n not in METRICS]
    if unknown:
        raise ConfigError(f"Unknown metrics {unknown}; known: {list(METRICS)}")
    ratio_cuped = [n for n in cuped if METRICS[n].is_ratio]
    if ratio_cuped:
        raise ConfigError(f"CUPED is implemented for per-unit metrics only, not {ratio_cuped}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    units = unit_table(frame, pre_columns=sorted(set(cuped.values())))
    variants = units[VARIANT].to_numpy()
    if control not in set(variants):
        raise DataError(f"Control variant {control!r} not in {sorted(set(variants))}")
    rows = []
    for name in names:
        metric = METRICS[name]
        y, d = _unit_values(units, metric)
        raw = _moments(variants, y, d)
        mom = raw
        if name in cuped:
            adjusted = cuped_adjust(y, units[cuped[name]].to_numpy(dtype=np.float64)).adjusted
            mom = _moments(variants, adjusted, d)
        ctl = mom.loc[control]
        for variant in mom.index.drop(control):
            trt = mom.loc[variant]
            df = None if metric.is_ratio else welch_df(trt.se2, trt.n, ctl.se2, ctl.n)
            lift = lift_test(trt.value, trt.se2, ctl.value, ctl.se2, alpha=alpha, df=df)
            reduction = math.nan
            if name in cuped:
                raw_var = raw.loc[variant, "se2"] + raw.loc[control, "se2"]
                reduction = 1 - (trt.se2 + ctl.se2) / raw_var if raw_var > 0 else math.nan
            rows.append({
                "variant": variant, "metric": name, "method": "delta" if df is None else "welch",
                "control": ctl.value, "treatment": trt.value,
                **{k: float(v) for k, v in lift._asdict().items()},
                "significant": bool(lift.p_value < alpha), "variance_reduction": reduction,
            })
    return pd.DataFrame(rows).rename(
        columns={"rel": "rel_lift", "rel_low": "rel_ci_low", "rel_high": "rel_ci_high"})


class SampleRatioMismatchWarning(UserWarning):
    """Observed unit counts do not fit the configured split: the readout is not trustworthy."""


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    p_value: float
    observed: dict[str, int]
    expected: dict[str, float]
    mismatch: bool


def check_srm(
    counts: Mapping[str, int] | pd.Series, weights: Mapping[str, float], *,
    threshold: float = SRM_P_THRESHOLD, warn: bool = True,
) -> SrmResult:
    """Pearson chi-square test (``scipy.stats.chisquare``) of unit counts per variant against the
    configured split ``weights`` (summing to 1). A mismatch (p < ``threshold``) means assignment
    or logging lost units unevenly, which biases every metric; it warns with
    ``SampleRatioMismatchWarning`` unless ``warn=False``.

    >>> check_srm({"control": 10_400, "treatment": 9_600}, {"control": .5, "treatment": .5},
    ...           warn=False).mismatch
    True
    """
    w = {str(k): float(v) for k, v in weights.items()}
    if len(w) < 2 or min(w.values()) <= 0 or abs(sum(w.values()) - 1) > 1e-6:
        raise ConfigError(f"SRM weights must be >= 2 positive shares summing to 1, got {w}")
    observed = {str(k): int(v) for k, v in dict(counts).items()}
    unknown = sorted(set(observed) - set(w))
    if unknown or min(observed.values(), default=0) < 0:
        raise DataError(f"Counts {observed} must be >= 0 and for configured variants {list(w)}")
    obs = np.array([observed.get(v, 0) for v in w], dtype=np.float64)
    if obs.sum() <= 0:
        raise DataError("SRM check needs at least one unit")
    expected = obs.sum() * np.array(list(w.values()))
    chi2, p_value = stats.chisquare(obs, expected)
    result = SrmResult(
        chi2=float(chi2), p_value=float(p_value), observed={v: observed.get(v, 0) for v in w},
        expected=dict(zip(w, expected.tolist(), strict=True)), mismatch=bool(p_value < threshold),
    )
    if result.mismatch and warn:
        warnings.warn(f"Sample ratio mismatch: p={result.p_value:.2e} < {threshold} for "
                      f"{result.observed} vs weights {w}", SampleRatioMismatchWarning, stacklevel=2)
    return result


@dataclass(frozen=True)
class GuardrailThresholds:
    """Upper limits a variant must stay at or under; a serving config provides the values."""

    latency_p99_ms: float
    fallback_rate: float

    def __post_init__(self) -> None:
        if not self.latency_p99_ms > 0:
            raise ConfigError(f"latency_p99_ms must be > 0, got {self.latency_p99_ms}")
        if not 0 <= self.fallback_rate <= 1:
            raise ConfigError(f"fallback_rate must be in [0, 1], got {self.fallback_rate}")


@dataclass(frozen=True)
class GuardrailCheck:
    variant: str
    metric: str
    value: float
    threshold: float
    passed: bool


def check_guardrails(
    observed: Mapping[str, Mapping[str, float]], thresholds: GuardrailThresholds
) -> list[GuardrailCheck]:
    """One pass/fail check per variant and guardrail (``latency_p99_ms``, ``fallback_rate``).

    ``observed`` maps variant -> {guardrail: value} (``df.to_dict("index")`` of a per-variant
    table). A NaN value fails: a guardrail that was not measured was not met.

    >>> check_guardrails({"treatment": {"latency_p99_ms": 180.0, "fallback_rate": 0.02}},
    ...                  GuardrailThresholds(200.0, 0.01))[1].passed
    False
    """
    limits = {"latency_p99_ms": thresholds.latency_p99_ms,
              "fallback_rate": thresholds.fallback_rate}
    checks = []
    for variant, values in observed.items():
        missing = [k for k in limits if k not in values]
        if missing:
            raise DataError(f"Variant {variant!r} lacks guardrail values {missing}")
        for name, limit in limits.items():
            value = float(values[name])
            checks.append(GuardrailCheck(variant=str(variant), metric=name, value=value,
                                         threshold=limit, passed=bool(value <= limit)))
    return checks
