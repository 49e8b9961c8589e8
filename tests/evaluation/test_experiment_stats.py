"""Experiment statistics: tiny frames with known answers, cross-checks against scipy/statsmodels
and a bootstrap, and the simulation proofs (A/A false-positive rates, SRM, lift, CUPED) run
through ``benchmarks/aa_simulation.py`` with the numbers of experiments the brief asks for."""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evaluation.cuped import cuped_adjust
from evaluation.experiment_stats import (
    METRICS,
    GuardrailThresholds,
    SampleRatioMismatchWarning,
    check_guardrails,
    check_srm,
    compare_variants,
    lift_test,
    ratio_from_sums,
    unit_table,
    variant_summary,
)
from evaluation.planning import target_rate, units_per_variant
from evaluation.sequential import horizon_tau2, msprt, sequential_test
from recsys.errors import ConfigError, DataError

COUNTS = ["exposures", "impressions", "clicks", "carts", "purchases", "revenue", "orders"]


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    """The benchmark script as a module, so the proofs here run the very code it reports."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "aa_simulation.py"
    spec = importlib.util.spec_from_file_location("aa_simulation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while being built
    spec.loader.exec_module(module)
    return module


def tiny_frame() -> pd.DataFrame:
    """Two control units (one over two days) and two treatment units with hand-checked metrics."""
    # variant, unit, day, exposures, impressions, clicks, carts, purchases, revenue, orders
    rows = [
        ("control", "a", 0, 1, 6, 1, 1, 1, 50.0, 1),
        ("control", "a", 1, 1, 4, 0, 0, 0, 0.0, 0),
        ("control", "b", 1, 1, 10, 3, 0, 0, 0.0, 0),
        ("treatment", "c", 0, 1, 10, 2, 1, 2, 90.0, 2),
        ("treatment", "d", 0, 1, 10, 4, 2, 1, 30.0, 1),
    ]
    return pd.DataFrame(rows, columns=["variant", "unit", "day", *COUNTS])


def random_units(n: int = 4000, seed: int = 0, lift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    treated = rng.random(n) < 0.5
    impressions = rng.poisson(rng.gamma(0.7, 20 / 0.7, n)) + 1
    clicks = rng.binomial(impressions, np.where(treated, 0.05 * (1 + lift), 0.05))
    orders = rng.binomial(clicks, 0.2)
    pre = rng.gamma(0.5, 40, n)
    revenue = orders * rng.lognormal(3.5, 0.7, n) + 0.8 * pre + rng.normal(0, 5, n).clip(0)
    return pd.DataFrame({
        "variant": np.where(treated, "treatment", "control"), "unit": np.arange(n),
        "exposures": 1, "impressions": impressions, "clicks": clicks, "carts": orders,
        "purchases": orders, "revenue": revenue, "orders": orders, "pre_revenue": pre,
    })


# --- aggregates -------------------------------------------------------------------------------

def test_unit_table_collapses_days() -> None:
    units = unit_table(tiny_frame())
    assert list(units["unit"]) == ["a", "b", "c", "d"]
    assert units.set_index("unit").loc["a", "impressions"] == 10
    early = unit_table(tiny_frame(), until=0)
    assert list(early["unit"]) == ["a", "c", "d"]


def test_variant_summary_known_values() -> None:
    summary = variant_summary(tiny_frame())
    ctl, trt = summary.loc["control"], summary.loc["treatment"]
    assert ctl["units"] == 2 and ctl["exposures"] == 3 and ctl["impressions"] == 20
    assert ctl["ctr"] == pytest.approx(4 / 20) and trt["ctr"] == pytest.approx(6 / 20)
    assert ctl["add_to_cart_rate"] == 0.5 and trt["add_to_cart_rate"] == 1.0
    assert ctl["conversion_rate"] == 0.5 and trt["conversion_rate"] == 1.0
    assert ctl["revenue_per_unit"] == 25.0 and trt["revenue_per_unit"] == 60.0
    assert ctl["aov"] == 50.0 and trt["aov"] == pytest.approx(120 / 3)


def test_timestamps_give_daily_looks() -> None:
    frame = tiny_frame()
    frame["timestamp"] = pd.Timestamp("2024-03-01 10:00", tz="UTC") + pd.to_timedelta(
        frame.pop("day"), unit="D")
    units = unit_table(frame, until=pd.Timestamp("2024-03-01", tz="UTC"))
    assert list(units["unit"]) == ["a", "c", "d"]


@pytest.mark.parametrize("break_it, message", [
    (lambda f: f.drop(columns="clicks"), "Missed columns"),
    (lambda f: f.assign(revenue=-1.0), "revenue"),
    (lambda f: f.assign(variant=["control", "treatment", "control", "treatment", "treatment"]),
     "more than one variant"),
    (lambda f: f.assign(clicks=["x"] * 5), "numeric"),
])
def test_bad_frames_are_data_errors(
    break_it: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        unit_table(break_it(tiny_frame()))


def test_pre_period_must_be_constant_per_unit() -> None:
    frame = tiny_frame().assign(pre=[1.0, 2.0, 0.0, 0.0, 0.0])
    with pytest.raises(DataError, match="constant"):
        unit_table(frame, pre_columns=["pre"])


# --- lift -------------------------------------------------------------------------------------

def test_welch_matches_scipy() -> None:
    units = random_units()
    row = compare_variants(units, metrics=["revenue_per_unit"]).iloc[0]
    t = units.loc[units.variant == "treatment", "revenue"]
    c = units.loc[units.variant == "control", "revenue"]
    ref = stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert row["method"] == "welch"
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_delta_method_ratio_variance_matches_bootstrap() -> None:
    units = random_units(n=3000, seed=1)
    y, d = units["clicks"].to_numpy(float), units["impressions"].to_numpy(float)
    n = len(y)
    ratio, se2 = ratio_from_sums(n, y.sum(), d.sum(), (y * y).sum(), (d * d).sum(), (y * d).sum())
    idx = np.random.default_rng(2).integers(0, n, (2000, n))
    boot = y[idx].sum(axis=1) / d[idx].sum(axis=1)
    assert float(ratio) == pytest.approx(y.sum() / d.sum())
    assert math.sqrt(float(se2)) == pytest.approx(boot.std(), rel=0.08)


def test_ratio_metric_lift_uses_delta_and_detects_lift() -> None:
    table = compare_variants(random_units(n=20_000, seed=3, lift=0.15), metrics=["ctr", "aov"])
    ctr = table.set_index("metric").loc["ctr"]
    assert ctr["method"] == "delta" and ctr["significant"]
    assert ctr["rel_ci_low"] < 0.15 < ctr["rel_ci_high"]
    assert ctr["ci_low"] < ctr["diff"] < ctr["ci_high"]


def test_relative_interval_is_nan_when_control_is_not_away_from_zero() -> None:
    lift = lift_test(1.0, 0.01, 0.1, 0.01)  # control 0.1 with se 0.1: Fieller is unbounded
    assert math.isnan(float(lift.rel_low)) and math.isnan(float(lift.rel_high))
    assert 0 < float(lift.p_value) < 1


def test_compare_variants_validates() -> None:
    with pytest.raises(DataError, match="Control variant"):
        compare_variants(tiny_frame(), control="nope")
    with pytest.raises(ConfigError, match="Unknown metrics"):
        compare_variants(tiny_frame(), metrics=["ctrr"])
    with pytest.raises(ConfigError, match="per-unit"):
        compare_variants(tiny_frame(), cuped={"ctr": "pre"})


# --- SRM and guardrails -----------------------------------------------------------------------

def test_srm_known_chi_square_and_warning() -> None:
    weights = {"control": 0.5, "treatment": 0.5}
    with pytest.warns(SampleRatioMismatchWarning):
        skewed = check_srm({"control": 9_600, "treatment": 10_400}, weights)
    assert skewed.chi2 == pytest.approx(32.0) and skewed.mismatch
    assert skewed.p_value == pytest.approx(stats.chi2.sf(32.0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fair = check_srm({"control": 10_050, "treatment": 9_950}, weights)
    assert not fair.mismatch and fair.p_value > 0.4
    three = check_srm({"a": 500, "b": 250}, {"a": 0.5, "b": 0.25, "c": 0.25}, warn=False)
    assert three.observed["c"] == 0 and three.mismatch


def test_srm_validates() -> None:
    with pytest.raises(ConfigError, match="summing to 1"):
        check_srm({"a": 1, "b": 1}, {"a": 0.5, "b": 0.6})
    with pytest.raises(DataError, match="configured"):
        check_srm({"a": 1, "z": 1}, {"a": 0.5, "b": 0.5})


def test_srm_simulation(sim: ModuleType) -> None:
    res = sim.run_srm(units=20_000, share=0.52, seeds=1000)
    assert res["skewed"]["seed0_flagged"] and res["skewed"]["flag_rate"] >= 0.95
    assert not res["fair"]["seed0_flagged"] and res["fair"]["flag_rate"] <= 0.01


def test_guardrails() -> None:
    limits = GuardrailThresholds(latency_p99_ms=200.0, fallback_rate=0.01)
    checks = check_guardrails({
        "control": {"latency_p99_ms": 150.0, "fallback_rate": 0.001},
        "treatment": {"latency_p99_ms": 240.0, "fallback_rate": float("nan")},
    }, limits)
    assert [(c.variant, c.metric, c.passed) for c in checks] == [
        ("control", "latency_p99_ms", True), ("control", "fallback_rate", True),
        ("treatment", "latency_p99_ms", False), ("treatment", "fallback_rate", False)]
    with pytest.raises(DataError, match="fallback_rate"):
        check_guardrails({"a": {"latency_p99_ms": 1.0}}, limits)
    with pytest.raises(ConfigError):
        GuardrailThresholds(latency_p99_ms=0.0, fallback_rate=0.01)


# --- CUPED ------------------------------------------------------------------------------------

def test_cuped_theta_and_reduction_on_known_correlation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=100_000)
    y = 2.0 * x + rng.normal(size=x.size)  # corr^2 = 4 / 5
    res = cuped_adjust(y, x)
    assert float(res.theta) == pytest.approx(2.0, abs=0.02)
    assert float(res.variance_reduction) == pytest.approx(0.8, abs=0.01)
    assert res.adjusted.mean() == pytest.approx(y.mean())
    assert float(cuped_adjust(y, np.ones_like(x)).variance_reduction) == 0.0
    with pytest.raises(DataError):
        cuped_adjust(y, x[:-1])


def test_compare_variants_with_cuped_shrinks_the_interval() -> None:
    units = random_units(n=6000, seed=4)
    plain = compare_variants(units, metrics=["revenue_per_unit"]).iloc[0]
    adjusted = compare_variants(units, metrics=["revenue_per_unit"],
                                cuped={"revenue_per_unit": "pre_revenue"}).iloc[0]
    assert adjusted["variance_reduction"] > 0.3
    width = adjusted["ci_high"] - adjusted["ci_low"]
    assert width == pytest.approx((plain["ci_high"] - plain["ci_low"])
                                  * math.sqrt(1 - adjusted["variance_reduction"]))


# --- sequential -------------------------------------------------------------------------------

def test_msprt_matches_johari_balanced_formula() -> None:
    n, v, tau2 = np.array([100.0, 400.0, 900.0]), 2.0, 0.05  # per-pair variance V = 2
    diff = np.array([0.1, 0.15, 0.12])
    res = msprt(diff, v / n, tau2)
    lam = np.sqrt(v / (v + n * tau2)) * np.exp(n**2 * tau2 * diff**2 / (2 * v * (v + n * tau2)))
    np.testing.assert_allclose(res.log_lr, np.log(lam))
    np.testing.assert_allclose(res.p_value, np.minimum(1, np.minimum.accumulate(1 / lam)))
    assert np.all(np.diff(res.ci_low) >= 0) and np.all(np.diff(res.ci_high) <= 0)


def test_msprt_confidence_sequence_inverts_the_test() -> None:
    res = msprt([0.3], [0.01], tau2=0.02)
    for edge in (float(res.ci_low[0]), float(res.ci_high[0])):
        at_edge = msprt([0.3], [0.01], tau2=0.02, theta0=edge)
        assert float(at_edge.p_value[0]) == pytest.approx(0.05)


def test_msprt_is_always_valid_on_gaussian_streams() -> None:
    rng = np.random.default_rng(0)
    increments = rng.normal(size=(20_000, 100))  # 100 looks, known unit variance
    n = np.arange(1, 101)
    res = msprt(increments.cumsum(axis=1) / n, 1.0 / n, tau2=horizon_tau2(1 / 100))
    assert (res.p_value[:, -1] < 0.05).mean() <= 0.05


def test_msprt_skips_empty_looks_and_validates() -> None:
    res = msprt([np.nan, 0.5, 0.5], [np.nan, 0.0, 0.01], tau2=0.1)
    assert res.p_value[0] == 1.0 and res.p_value[1] == 1.0 and res.ci_low[1] == -np.inf
    with pytest.raises(ConfigError):
        msprt([0.1], [0.1], tau2=0.0)


def test_horizon_tau2_solves_its_equation() -> None:
    u = horizon_tau2(1.0, alpha=0.05)
    assert u == pytest.approx(2 * math.log(20) + math.log1p(u))
    assert 8.0 < u < 8.5


def test_frame_paths_match_vectorised_simulation(sim: ModuleType) -> None:
    cfg = sim.ShopSim(units=1500)
    panel = sim.simulate(cfg, 1, np.random.default_rng(5))
    frame = sim.panel_frame(panel)
    tau2 = 1e-4
    for name in ("ctr", "revenue_per_unit", "conversion_rate"):
        vec = sim.arm_moments(panel, METRICS[name])
        table = compare_variants(frame, metrics=[name]).iloc[0]
        assert table["treatment"] == pytest.approx(vec.value_t[0, -1])
        assert table["control"] == pytest.approx(vec.value_c[0, -1])
        p_fixed, p_seq, _ = sim.daily_tests(panel, METRICS[name], tau2)
        assert table["p_value"] == pytest.approx(p_fixed[0, -1])
        looks = sequential_test(frame, name, treatment="treatment", tau2=tau2)
        assert list(looks["day"]) == list(range(cfg.days))
        np.testing.assert_allclose(looks["p_value"], p_seq[0])


# --- planner ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rate, mde", [(0.05, 0.10), (0.02, 0.05), (0.30, 0.03), (0.10, -0.1)])
def test_planner_statsmodels_matches_closed_forms(rate: float, mde: float) -> None:
    pytest.importorskip("statsmodels")
    n_sm = units_per_variant(rate, mde)
    h = 2 * math.asin(math.sqrt(rate * (1 + mde))) - 2 * math.asin(math.sqrt(rate))
    closed_arcsine = 2 * ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / h) ** 2
    assert n_sm == pytest.approx(closed_arcsine, rel=1e-3)
    assert units_per_variant(rate, mde, method="normal") == pytest.approx(n_sm, rel=0.03)


def test_planner_relative_and_absolute_flag() -> None:
    assert target_rate(0.05, 0.10) == pytest.approx(0.055)
    assert target_rate(0.05, 0.01, relative=False) == pytest.approx(0.06)
    assert units_per_variant(0.05, 0.005, relative=False, method="normal") == units_per_variant(
        0.05, 0.10, method="normal")
    with pytest.raises(ConfigError, match="relative/absolute"):
        units_per_variant(0.05, 5.0, relative=False)
    with pytest.raises(ConfigError):
        units_per_variant(1.5, 0.1)


def test_planned_units_reach_the_planned_power(sim: ModuleType) -> None:
    pytest.importorskip("statsmodels")
    res = sim.run_planner(baseline=0.05, mde=0.10, sims=8000)
    assert res["simulated_power"] == pytest.approx(0.80, abs=0.02)


# --- simulation proofs ------------------------------------------------------------------------

@pytest.mark.slow
def test_aa_false_positive_rates(sim: ModuleType) -> None:
    metrics = ("ctr", "conversion_rate", "revenue_per_unit")
    res = sim.run_experiments(sim.ShopSim(units=2000), 1000, chunk=50, seed=7, metrics=metrics)
    for name in metrics:
        assert 0.035 <= res["rate_fixed"][name] <= 0.065, (name, res["rate_fixed"])
        assert res["rate_msprt"][name] <= 0.06, (name, res["rate_msprt"])
        assert res["rate_peeking_fixed"][name] > 0.06, (name, res["rate_peeking_fixed"])
    cuped = res["cuped_revenue_per_unit"]
    assert cuped["in_sample_variance_reduction"] > 0.05
    assert abs(cuped["in_sample_variance_reduction_shuffled_pre"]) < 0.01
    assert cuped["variance_reduction_of_diff"] > 0.0
    assert 0.035 <= cuped["rate_fixed_cuped"] <= 0.065


@pytest.mark.slow
def test_real_ctr_lift_is_detected(sim: ModuleType) -> None:
    cfg = sim.ShopSim(units=20_000, ctr_lift=0.10)
    frame = sim.panel_frame(sim.simulate(cfg, 1, np.random.default_rng(11)))
    row = compare_variants(frame, metrics=["ctr"]).iloc[0]
    assert row["p_value"] < 0.001 and row["rel_ci_low"] < 0.10 < row["rel_ci_high"]
    tau2 = sim.pilot_tau2(cfg, seed=11, metrics=("ctr",), experiments=2)["ctr"]
    looks = sequential_test(frame, "ctr", treatment="treatment", tau2=tau2)
    assert looks["reject"].iloc[-1] and looks["cs_low"].iloc[-1] > 0
