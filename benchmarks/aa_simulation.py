"""Proof of the experiment statistics on a simulated shop: A/A false-positive rates (one look and
14 daily looks, fixed-horizon vs mSPRT), SRM detection, power on a real CTR lift, CUPED variance
reduction and the planner's power. Prints JSON; the figures are quoted in docs/experiments.md.

Each simulated unit arrives on a uniform day of the 14 and then, every day, sees Poisson
impressions (Gamma-distributed activity: a long tail of heavy users), clicks each with its own
Beta-distributed probability, carts a share of clicks and buys a share of carts with its own
Beta probability, at log-normal order values scaled by its own price level. The pre-period
revenue (CUPED covariate) comes from the same unit over the 14 days before. Experiments are
vectorised: arrays are (experiments, units, days), processed in chunks.

    python benchmarks/aa_simulation.py --experiments 2000 --units 4000
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from evaluation.cuped import cuped_adjust
from evaluation.experiment_stats import (
    METRICS,
    Metric,
    check_srm,
    lift_test,
    ratio_from_sums,
    variant_summary,
    welch_df,
)
from evaluation.planning import units_per_variant
from evaluation.sequential import MIN_UNITS, horizon_tau2, msprt

Array = npt.NDArray[np.float64]
ALPHA = 0.05
COUNTS = ("impressions", "clicks", "carts", "purchases", "revenue")


@dataclass(frozen=True)
class ShopSim:
    units: int = 4000
    days: int = 14
    treatment_share: float = 0.5
    ctr_lift: float = 0.0  # relative lift of every treated unit's click probability
    impressions_per_day: float = 8.0
    activity_shape: float = 0.6  # Gamma shape of daily impressions; < 1: heavy users dominate
    ctr_beta: tuple[float, float] = (1.5, 28.5)  # per-unit click probability, mean 5%
    cart_per_click: float = 0.3
    purchase_beta: tuple[float, float] = (2.0, 4.0)  # per-unit purchase per cart, mean 1/3
    order_log_mean: float = 3.7  # order value median ~ 40
    order_log_sd: float = 0.8
    spend_sd: float = 0.6  # log sd of a unit's price level: makes pre-period revenue predictive


class Panel(NamedTuple):
    """Days sit on axis 1 so cumulative sums and per-arm sums run over contiguous memory."""

    treated: npt.NDArray[np.bool_]  # (E, N)
    active: Array  # (E, D, N): 1.0 once the unit has arrived
    cum: dict[str, Array]  # (E, D, N) cumulative counts per unit at each daily look
    pre_revenue: Array  # (E, N)


def _thin(rng: np.random.Generator, n: npt.NDArray[Any], p: npt.ArrayLike) -> npt.NDArray[Any]:
    """Binomial(n, p) drawn only where n > 0 (most entries are 0 down the funnel)."""
    out = np.zeros(n.shape, dtype=np.int64)
    hit = n > 0
    out[hit] = rng.binomial(n[hit], np.broadcast_to(p, n.shape)[hit])
    return out


def _cumulate(daily: npt.NDArray[Any]) -> Array:
    """Running totals over the day axis (float first: cumsum with a dtype cast is ~4x slower)."""
    out = daily.astype(np.float64)
    return np.cumsum(out, axis=1, out=out)


def _revenue(rng: np.random.Generator, orders: npt.NDArray[Any], level: npt.ArrayLike,
             cfg: ShopSim) -> Array:
    revenue = np.zeros(orders.shape)
    hit = orders > 0
    value = rng.lognormal(cfg.order_log_mean, cfg.order_log_sd, int(hit.sum()))
    revenue[hit] = orders[hit] * np.broadcast_to(level, orders.shape)[hit] * value
    return revenue


def simulate(cfg: ShopSim, experiments: int, rng: np.random.Generator) -> Panel:
    """``experiments`` independent experiments with ``cfg.units`` units over ``cfg.days`` days."""
    shape, days = (experiments, cfg.units), cfg.days
    activity = rng.gamma(cfg.activity_shape, cfg.impressions_per_day / cfg.activity_shape, shape)
    p_click = rng.beta(*cfg.ctr_beta, shape)
    p_buy = rng.beta(*cfg.purchase_beta, shape)
    level = rng.lognormal(-cfg.spend_sd**2 / 2, cfg.spend_sd, shape)
    treated = rng.random(shape) < cfg.treatment_share
    arrival = rng.integers(0, days, shape)
    active = (arrival[:, None, :] <= np.arange(days)[None, :, None]).astype(np.float64)
    p_treat = np.where(treated, np.minimum(p_click * (1 + cfg.ctr_lift), 1.0), p_click)
    impressions = rng.poisson(activity[:, None, :] * active)
    clicks = _thin(rng, impressions, p_treat[:, None, :])
    carts = _thin(rng, clicks, cfg.cart_per_click)
    purchases = _thin(rng, carts, p_buy[:, None, :])
    revenue = _revenue(rng, purchases, level[:, None, :], cfg)
    daily = dict(zip(COUNTS, (impressions, clicks, carts, purchases, revenue), strict=True))
    cum = {k: _cumulate(v) for k, v in daily.items()}
    cum["orders"] = cum["purchases"]
    cum["exposures"] = _cumulate(active)
    pre_impressions = rng.poisson(activity * days)
    pre_purchases = _thin(rng, _thin(rng, _thin(rng, pre_impressions, p_click),
                                     cfg.cart_per_click), p_buy)
    return Panel(treated, active, cum, _revenue(rng, pre_purchases, level, cfg))


def panel_frame(panel: Panel, experiment: int = 0) -> pd.DataFrame:
    """One experiment as the per-unit-and-day frame the library reads (for cross-checks)."""
    day, unit = np.nonzero(panel.active[experiment])
    data: dict[str, Any] = {
        "variant": np.where(panel.treated[experiment, unit], "treatment", "control"),
        "unit": unit, "day": day, "exposures": 1,
    }
    for name in (*COUNTS, "orders"):
        daily = np.diff(panel.cum[name][experiment], axis=0, prepend=0.0)
        data[name] = daily[day, unit]
    data["pre_revenue"] = panel.pre_revenue[experiment, unit]
    return pd.DataFrame(data).sort_values(["unit", "day"], ignore_index=True)


class ArmMoments(NamedTuple):
    """A metric per arm at every daily look, each (E, D); ``support`` counts the units with a
    positive denominator (all arrived units for a per-unit mean)."""

    value_t: Array
    se2_t: Array
    n_t: Array
    support_t: Array
    value_c: Array
    se2_c: Array
    n_c: Array
    support_c: Array


def arm_moments(panel: Panel, metric: Metric) -> ArmMoments:
    """Per-arm sufficient sums by one batched matrix product per moment: (E, D, N) @ (E, N, 2)."""
    arms = np.stack([panel.treated, ~panel.treated], axis=2).astype(np.float64)
    y = panel.cum[metric.numerator]
    y = (y > 0).astype(np.float64) if metric.indicator else y
    n = panel.active @ arms
    sum_y, sum_yy = y @ arms, (y * y) @ arms
    if metric.denominator is None:  # d = 1 on every arrived unit
        value, se2 = ratio_from_sums(n, sum_y, n, sum_yy, n, sum_y)
        support = n
    else:
        d = panel.cum[metric.denominator]
        value, se2 = ratio_from_sums(n, sum_y, d @ arms, sum_yy, (d * d) @ arms, (y * d) @ arms)
        support = (d > 0).astype(np.float64) @ arms
    return ArmMoments(value[..., 0], se2[..., 0], n[..., 0], support[..., 0],
                      value[..., 1], se2[..., 1], n[..., 1], support[..., 1])


def daily_tests(panel: Panel, metric: Metric, tau2: float,
                min_units: int = MIN_UNITS) -> tuple[Array, Array, Array]:
    """Fixed-horizon p-values and mSPRT always-valid p-values, both (E, D), and the relative lift
    at the last look with its CI as (E, 3). A look where an arm has fewer than ``min_units``
    supporting units is skipped by both tests (p-value NaN, mSPRT unchanged)."""
    m = arm_moments(panel, metric)
    df = None if metric.is_ratio else welch_df(m.se2_t, m.n_t, m.se2_c, m.n_c)
    lift = lift_test(m.value_t, m.se2_t, m.value_c, m.se2_c, alpha=ALPHA, df=df)
    ready = np.minimum(m.support_t, m.support_c) >= min_units
    var = np.where(ready, m.se2_t + m.se2_c, np.nan)
    seq = msprt(m.value_t - m.value_c, var, tau2, alpha=ALPHA)
    rel = np.stack([lift.rel[:, -1], lift.rel_low[:, -1], lift.rel_high[:, -1]], axis=1)
    return np.where(ready, lift.p_value, np.nan), seq.p_value, rel


def pilot_tau2(cfg: ShopSim, seed: int, metrics: tuple[str, ...] = tuple(METRICS),
               experiments: int = 40) -> dict[str, float]:
    """tau^2 per metric from independent "historical" A/A data (a different seed, no lift), fixed
    before the experiments run: the value whose confidence sequence is tightest at day 14."""
    panel = simulate(replace(cfg, ctr_lift=0.0), experiments, np.random.default_rng(seed + 10_000))
    tau2 = {}
    for name in metrics:
        m = arm_moments(panel, METRICS[name])
        tau2[name] = horizon_tau2(float(np.median(m.se2_t[:, -1] + m.se2_c[:, -1])), ALPHA)
    return tau2


def horizon_welch(y: Array, treated: npt.NDArray[np.bool_]) -> tuple[Array, Array]:
    """Difference in per-unit means (treatment - control) and its Welch p-value, per experiment."""
    moments = []
    for arm in (treated, ~treated):
        n = arm.sum(axis=1)
        mean = (y * arm).sum(axis=1) / n
        moments.append((mean, ((y - mean[:, None]) ** 2 * arm).sum(axis=1) / (n - 1) / n, n))
    (mt, st, nt), (mc, sc, nc) = moments
    return mt - mc, lift_test(mt, st, mc, sc, df=welch_df(st, nt, sc, nc)).p_value


def run_experiments(
    cfg: ShopSim, experiments: int, *, chunk: int = 25, seed: int = 0,
    metrics: tuple[str, ...] = tuple(METRICS), with_cuped: bool = True,
) -> dict[str, Any]:
    """Rejection rates at alpha: one look at day 14 ("fixed"), any of the 14 daily looks with the
    fixed-horizon test ("peeking_fixed"), any look with the mSPRT ("msprt"); the coverage of the
    relative CTR lift's interval; CUPED on revenue per unit at day 14, with the real pre-period
    and with a shuffled (uninformative) one."""
    tau2 = pilot_tau2(cfg, seed, metrics)
    rng = np.random.default_rng(seed)
    hits = {k: {m: 0 for m in metrics} for k in ("fixed", "peeking_fixed", "msprt")}
    covered = 0
    cuped: dict[str, list[Array]] = {k: [] for k in (
        "diff_raw", "diff_cuped", "p_raw", "p_cuped", "reduction", "reduction_shuffled")}
    for start in range(0, experiments, chunk):
        panel = simulate(cfg, min(chunk, experiments - start), rng)
        for name in metrics:
            p_fixed, p_seq, rel = daily_tests(panel, METRICS[name], tau2[name])
            hits["fixed"][name] += int((p_fixed[:, -1] < ALPHA).sum())
            hits["peeking_fixed"][name] += int((np.nanmin(p_fixed, axis=1) < ALPHA).sum())
            hits["msprt"][name] += int((p_seq[:, -1] < ALPHA).sum())
            if name == "ctr":
                covered += int(((rel[:, 1] <= cfg.ctr_lift) & (cfg.ctr_lift <= rel[:, 2])).sum())
        if not with_cuped:
            continue
        y = panel.cum["revenue"][:, -1, :]  # every unit has arrived by the last day
        adj = cuped_adjust(y, panel.pre_revenue)
        shuffled = cuped_adjust(y, rng.permuted(panel.pre_revenue, axis=1))
        for key, values in (("raw", y), ("cuped", adj.adjusted)):
            diff, p = horizon_welch(values, panel.treated)
            cuped[f"diff_{key}"].append(diff)
            cuped[f"p_{key}"].append(p)
        cuped["reduction"].append(adj.variance_reduction)
        cuped["reduction_shuffled"].append(shuffled.variance_reduction)
    out: dict[str, Any] = {
        "experiments": experiments, "units": cfg.units, "days": cfg.days, "ctr_lift": cfg.ctr_lift,
        "min_units_per_look": MIN_UNITS, "tau2": tau2,
        **{f"rate_{k}": {m: v / experiments for m, v in h.items()} for k, h in hits.items()},
    }
    if "ctr" in metrics:
        out["ctr_rel_ci_coverage"] = covered / experiments
    if not with_cuped:
        return out
    c = {k: np.concatenate(v) for k, v in cuped.items()}
    var_raw, var_cuped = float(np.var(c["diff_raw"])), float(np.var(c["diff_cuped"]))
    return {
        **out,
        "cuped_revenue_per_unit": {
            "in_sample_variance_reduction": float(np.mean(c["reduction"])),
            "in_sample_variance_reduction_shuffled_pre": float(np.mean(c["reduction_shuffled"])),
            "variance_of_diff_raw": var_raw, "variance_of_diff_cuped": var_cuped,
            "variance_reduction_of_diff": 1 - var_cuped / var_raw,
            "rate_fixed_raw": float(np.mean(c["p_raw"] < ALPHA)),
            "rate_fixed_cuped": float(np.mean(c["p_cuped"] < ALPHA)),
        },
    }


def run_srm(units: int = 20_000, share: float = 0.52, seeds: int = 1000,
            seed: int = 0) -> dict[str, Any]:
    """Flag rates of the SRM check (p < 0.001) for a skewed and a fair split of ``units``."""
    weights = {"control": 0.5, "treatment": 0.5}
    out: dict[str, Any] = {"units": units, "seeds": seeds}
    for label, p_treat in (("skewed", share), ("fair", 0.5)):
        rng = np.random.default_rng(seed)
        # One seed end to end through the frame API, the rest vectorised on counts.
        treated = rng.random(units) < p_treat
        frame = pd.DataFrame({"variant": np.where(treated, "treatment", "control"),
                              "unit": np.arange(units), **{c: 0 for c in (*COUNTS, "orders")},
                              "exposures": 1})
        one = check_srm(variant_summary(frame)["units"], weights, warn=False)
        n_t = rng.binomial(units, p_treat, seeds)
        p = stats.chisquare(np.stack([units - n_t, n_t], axis=1), units / 2, axis=1).pvalue
        out[label] = {"treatment_share": p_treat, "seed0_p_value": one.p_value,
                      "seed0_flagged": one.mismatch, "flag_rate": float(np.mean(p < 0.001))}
    return out


def run_planner(baseline: float = 0.05, mde: float = 0.10, sims: int = 20_000,
                seed: int = 0) -> dict[str, Any]:
    """Planned units per variant, and the power a two-proportion test reaches at that size."""
    n = units_per_variant(baseline, mde)
    rng = np.random.default_rng(seed)
    pc = rng.binomial(n, baseline, sims) / n
    pt = rng.binomial(n, baseline * (1 + mde), sims) / n
    se2c, se2t = pc * (1 - pc) / (n - 1), pt * (1 - pt) / (n - 1)
    p = lift_test(pt, se2t, pc, se2c, df=welch_df(se2t, n, se2c, n)).p_value
    return {"baseline": baseline, "relative_mde": mde, "units_per_variant_arcsine": n,
            "units_per_variant_normal": units_per_variant(baseline, mde, method="normal"),
            "simulated_power": float(np.mean(p < ALPHA)), "sims": sims}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--units", type=int, default=4000)
    parser.add_argument("--lift-experiments", type=int, default=100)
    parser.add_argument("--lift-units", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    aa = run_experiments(ShopSim(units=args.units), args.experiments, chunk=args.chunk,
                         seed=args.seed)
    aa_seconds = time.perf_counter() - start
    lift_cfg = ShopSim(units=args.lift_units, ctr_lift=0.10)
    lift = run_experiments(lift_cfg, args.lift_experiments, chunk=max(1, args.chunk // 4),
                           seed=args.seed + 1, with_cuped=False)
    report = {"sim": asdict(ShopSim(units=args.units)), "aa": aa, "aa_seconds": aa_seconds,
              "ctr_lift_10pct": lift, "srm": run_srm(seed=args.seed),
              "planner": run_planner(seed=args.seed),
              "seconds": time.perf_counter() - start}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
