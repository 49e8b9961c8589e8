"""The backtest's verdict, the first thing a report shows: which model ranks best on each
surface, and the hybrid's lift over the best baseline with a paired interval.

A baseline here is any pipeline but ``hybrid``; the lift is mean(hybrid) / mean(baseline) - 1
on the same shoppers, its interval a paired bootstrap over shoppers
(:func:`evaluation.bootstrap.paired_lift`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluation.bootstrap import paired_lift
from evaluation.business import NO_PRICES, is_revenue
from evaluation.offline import ModelResult
from recsys.errors import DataError

VERDICT_METRICS = ("ndcg", "revenue_per_rec")


def surface_verdict(results: Mapping[str, ModelResult], k: int, *, n_resamples: int,
                    alpha: float, seed: int) -> dict[str, Any]:
    """Models ranked by mean NDCG@k; the hybrid's lift over the best baseline per metric."""
    key = f"ndcg@{k}"
    means = {name: r.means()[key] for name, r in results.items()}
    ranking = sorted(means.items(), key=lambda kv: -kv[1])
    baselines = [n for n, _ in ranking if n != "hybrid"]
    out: dict[str, Any] = {"ranking": ranking, "best": ranking[0][0],
                           "best_baseline": baselines[0] if baselines else None, "lifts": {}}
    if "hybrid" not in results or not baselines:
        return out
    base = results[baselines[0]]
    for metric in VERDICT_METRICS:
        name = f"{metric}@{k}"
        if name not in results["hybrid"].per_user and is_revenue(name):
            out["lifts"][name] = {"note": NO_PRICES.split(":")[0]}   # "no prices"
            continue
        try:
            lift = paired_lift(results["hybrid"].per_user[name], base.per_user[name],
                               n_resamples=n_resamples, alpha=alpha, seed=seed)
        except DataError as exc:
            out["lifts"][name] = {"note": str(exc)}
            continue
        out["lifts"][name] = {"hybrid": results["hybrid"].means()[name],
                              "baseline": base.means()[name], "lift": lift.estimate,
                              "low": lift.low, "high": lift.high, "n": lift.n,
                              "significant": lift.low > 0 or lift.high < 0}
    return out


def verdict(by_surface: Mapping[str, Mapping[str, ModelResult]], k: int, *,
            n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Per surface: :func:`surface_verdict`; and one sentence for the for_you surface."""
    surfaces = {s: surface_verdict(r, k, n_resamples=n_resamples, alpha=alpha, seed=seed)
                for s, r in by_surface.items()}
    return {"k": k, "alpha": alpha, "surfaces": surfaces,
            "sentence": sentence(surfaces.get("for_you") or next(iter(surfaces.values())), k,
                                 alpha)}


def sentence(v: Mapping[str, Any], k: int, alpha: float) -> str:
    lift = v["lifts"].get(f"ndcg@{k}", {})
    if "lift" not in lift:
        return f"best model by NDCG@{k}: {v['best']}."
    pct = int(round(100 * (1 - alpha)))
    verdict_word = ("better than" if lift["low"] > 0 else "worse than" if lift["high"] < 0
                    else "not distinguishable from")
    return (f"Best model by NDCG@{k}: {v['best']}. The hybrid is {verdict_word} the best "
            f"baseline ({v['best_baseline']}): NDCG@{k} {lift['hybrid']:.4f} vs "
            f"{lift['baseline']:.4f}, lift {lift['lift']:+.1%} "
            f"[{lift['low']:+.1%}, {lift['high']:+.1%}] ({pct}% paired bootstrap interval over "
            f"{lift['n']:,} shoppers).")
