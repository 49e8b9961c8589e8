"""Proofs that the A/B machinery tells the truth. Prints JSON; the figures are quoted in
docs/experiments.md.

1. **Popularity vs hybrid, closed loop.** Generate a synthetic shop, train a bundle, evaluate
   both pipelines offline, serve the bundle with a two-variant experiment (control: popularity,
   treatment: hybrid) under a real uvicorn process (``python -m pipelines.serve``), drive it
   over HTTP with the shop's own shoppers (``pipelines.simulate``), then read the experiment
   out of the event store. The readout must detect the hybrid's lift in CTR and in revenue per
   user, and every lift's sign must agree with the offline evaluation. The same loop with the
   hybrid in both arms (a live A/A) shows what the attribution reads when nothing differs;
   re-splitting its units with 1,000 new bucketing salts gives the readout's false-positive
   rate on closed-loop data.
2. **A/A.** 1,000 simulated A/A experiments through the statistics
   (``benchmarks/aa_simulation.py``): the fixed-horizon false-positive rate stays in
   [3.5%, 6.5%], the mSPRT read daily stays <= 6%, and the fixed test peeked at daily exceeds it.
3. **SRM.** A 52/48 split of 20,000 units is flagged, in the statistics (1,000 seeds) and through
   the readout from a real event store.

    python benchmarks/ab_proofs.py --work runs/ab_proofs          # ~10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.aa_simulation import ShopSim, run_experiments, run_srm  # noqa: E402
from evaluation.backtest import backtest  # noqa: E402
from evaluation.experiment_readout import (  # noqa: E402
    experiment_frame,
    experiment_results,
    load_events,
    load_exposures,
    summary_lines,
    write_report,
)
from evaluation.experiment_stats import (  # noqa: E402
    GuardrailThresholds,
    compare_variants,
    unit_table,
)
from pipelines.experiment import live_guardrails  # noqa: E402
from pipelines.simulate import SimConfig, simulate, wait_ready  # noqa: E402
from pipelines.train import train  # noqa: E402
from recsys.config import TrainConfig  # noqa: E402
from recsys.data.synthetic import ShopConfig, generate_shop  # noqa: E402
from recsys.data.synthetic_truth import ShopTruth  # noqa: E402
from recsys.data.validate import load_dataset  # noqa: E402
from serving.bucketing import bucket, choose_variant  # noqa: E402
from serving.event_store import SQLiteEventStore  # noqa: E402
from serving.exposures import Exposure, write_exposures  # noqa: E402

EXPERIMENT = "popularity-vs-hybrid"
OFFLINE = (("ctr", "ctr@10"), ("conversion_rate", "conversion@10"),
           ("revenue_per_unit", "revenue_per_user@10"))
TRAIN = {  # smaller than configs/train.toml so the whole proof runs in minutes on 2 cores
    "mf": {"iterations": 15, "factors": 32, "eval_every": 5},
    "content": {"epochs": 3, "max_pairs_per_epoch": 20_000, "batch_size": 256, "dim": 32,
                "progress": False},
    "ranker_queries": 3000,
    "hybrid": {"ranker": {"max_rounds": 150}},
}
SERVING = """
event_store = "{db}"
warmup_requests = 5
erasure_poll_s = 0
[bundles]
default = "{bundle}"
[guardrails]
latency_p99_ms = {latency}
fallback_rate = 0.5
[[experiments]]
name = "{name}"
salt = "ab-proofs"
[[experiments.variants]]
name = "control"
weight = 0.5
pipeline = "{control}"
[[experiments.variants]]
name = "treatment"
weight = 0.5
pipeline = "{treatment}"
"""
WEIGHTS = {"name": EXPERIMENT, "variants": [{"name": "control", "weight": 0.5},
                                            {"name": "treatment", "weight": 0.5}]}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline(shop: Path) -> dict[str, dict[str, float]]:
    """Both pipelines in the backtest of ``recsys evaluate`` (the served bundle saw every event,
    so it is not scored itself): the bundle's config fitted before the default cutoff, asked at
    it, scored on the purchases after it, on ``for_you``."""
    fold, = backtest(load_dataset(shop), TrainConfig.model_validate(TRAIN),
                     models=("popularity", "hybrid"), ks=(10,))
    out = {p: r.means() for p, r in fold.results["for_you"].items()}
    return {p: {k: v for k, v in m.items() if k in {
        "ctr@10", "conversion@10", "revenue_per_user@10", "ndcg@10", "recall@10"}}
        for p, m in out.items()} | {"window_users": {"n": float(len(fold.window.users))}}


def serve_and_simulate(work: Path, shop: Path, bundle: Path, *, control: str, treatment: str,
                       users: int, days: int, seed: int, visits_per_day: float,
                       latency_p99_ms: float) -> tuple[Any, dict[str, Any]]:
    """Start ``python -m pipelines.serve`` with a two-variant experiment, drive it over HTTP,
    stop it, and read the experiment out of its store (live guardrails included)."""
    db = work / "events.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = work / "serving.toml"
    config.write_text(SERVING.format(db=db, bundle=bundle, name=EXPERIMENT, control=control,
                                     treatment=treatment, latency=latency_p99_ms))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = work / "server.log"
    log(f"starting the API on {base}: control={control}, treatment={treatment}")
    with open(server_log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipelines.serve", "--config", str(config), "--port",
             str(port), "--log-level", "warning"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            wait_ready(client, 120.0)
            log(f"simulating {users} shoppers for {days} days over HTTP")
            summary = simulate(lambda path, body: client.post(path, json=body),
                               ShopTruth.load(shop),
                               SimConfig(users=users, days=days, seed=seed,
                                         visits_per_day=visits_per_day), progress=log)
        guardrails = live_guardrails(base, EXPERIMENT)
    finally:
        server.send_signal(signal.SIGINT)   # graceful: queued exposures are written
        server.wait(timeout=60)
    with SQLiteEventStore(db) as store:
        readout = experiment_results(
            store, WEIGHTS, pre_events=load_dataset(shop).events, guardrails=guardrails,
            thresholds=GuardrailThresholds(latency_p99_ms, 0.5))
    for line in summary_lines(readout):
        log(line)
    return summary, readout


def _sim_figures(summary: Any, users: int, days: int, visits_per_day: float) -> dict[str, Any]:
    return {**{k: getattr(summary, k) for k in (
        "requests", "request_errors", "fallbacks", "events_sent", "events_inserted",
        "events_rejected", "batch_errors", "impressions", "clicks", "carts", "purchases",
        "revenue", "start", "end")}, "seconds": round(summary.seconds, 1),
        "ms_per_visit": round(1000 * summary.seconds / max(summary.requests, 1), 2),
        "users": users, "days": days, "visits_per_day": visits_per_day}


def _lifts(readout: dict[str, Any]) -> dict[str, Any]:
    lift = {row["metric"]: row for row in readout["lift"]}
    cuped = readout["cuped"]["rows"][0] if readout["cuped"]["rows"] else {}
    return {
        "units": {v: s["units"] for v, s in readout["summary"].items()},
        "lift": {m: {k: row[k] for k in ("control", "treatment", "rel_lift", "rel_ci_low",
                                         "rel_ci_high", "p_value", "significant")}
                 for m, row in lift.items()},
        "revenue_per_unit_cuped": {k: cuped.get(k) for k in (
            "rel_lift", "p_value", "significant", "variance_reduction")},
        "msprt": {s["metric"]: {"p_value": s["p_value"],
                                "first_reject_day": s["first_reject_day"]}
                  for s in readout["sequential"]},
        "srm_p_value": readout["srm"]["p_value"], "srm_mismatch": readout["srm"]["mismatch"],
        "guardrails": readout["guardrails"]["checks"], "warnings": readout["warnings"],
    }


def closed_loop(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shop, bundle = work / "shop", work / "bundle"
    started = time.perf_counter()
    if not (shop / "truth.npz").exists():
        log(f"generating a shop of {args.users} users, {args.items} items, {args.days} days")
        generate_shop(ShopConfig(users=args.users, items=args.items, days=args.days,
                                 seed=args.seed)).save(shop)
    if not (bundle / "manifest.json").exists():
        log("training the bundle")
        train(shop, bundle, TrainConfig.model_validate(TRAIN), quiet=True)
    prep_seconds = time.perf_counter() - started
    log("offline evaluation")
    off = offline(shop)
    common = {"seed": args.seed, "visits_per_day": args.visits_per_day,
              "latency_p99_ms": args.latency_p99_ms}
    summary, readout = serve_and_simulate(work, shop, bundle, control="popularity",
                                          treatment="hybrid", users=args.sim_users,
                                          days=args.sim_days, **common)
    report = write_report(readout, work / "report")
    lift = {row["metric"]: row for row in readout["lift"]}
    cuped = readout["cuped"]["rows"][0] if readout["cuped"]["rows"] else {}
    agree = {online: bool(np.sign(lift[online]["diff"]) == np.sign(
        off["hybrid"][metric] - off["popularity"][metric])) for online, metric in OFFLINE}
    out: dict[str, Any] = {
        "shop": {"users": args.users, "items": args.items, "days": args.days, "seed": args.seed},
        "prep_seconds": round(prep_seconds, 1),
        "offline_at_10": off,
        "simulation": _sim_figures(summary, args.sim_users, args.sim_days, args.visits_per_day),
        "readout": {**_lifts(readout), "report": str(report)},
        "sign_agrees_with_offline": agree,
        "checks": {
            "no_errors": summary.error_count == 0,
            "ctr_lift_significant": bool(lift["ctr"]["significant"] and lift["ctr"]["diff"] > 0),
            "revenue_per_user_lift_significant": bool(
                lift["revenue_per_unit"]["diff"] > 0 and (lift["revenue_per_unit"]["significant"]
                                                          or cuped.get("significant", False))),
            "signs_agree_with_offline": all(agree.values()),
            "no_srm": not readout["srm"]["mismatch"],
        },
    }
    if args.aa_live_users:
        # the same loop with the hybrid in both arms: the attribution must not invent a lift
        summary, readout = serve_and_simulate(work, shop, bundle, control="hybrid",
                                              treatment="hybrid", users=args.aa_live_users,
                                              days=args.sim_days, **common)
        lifts = _lifts(readout)
        with SQLiteEventStore(work / "events.db") as store:
            data = experiment_frame(load_exposures(store, EXPERIMENT), load_events(store),
                                    pre_events=load_dataset(shop).events)
        resplit = rerandomized_aa(data.frame, args.aa_resplits)
        out["aa_live"] = {
            "simulation": _sim_figures(summary, args.aa_live_users, args.sim_days,
                                       args.visits_per_day),
            "readout": lifts,
            "resplits": resplit,
            "checks": {"aa_live_no_error": summary.error_count == 0,
                       "aa_live_no_srm": not lifts["srm_mismatch"],
                       "aa_resplit_fpr_in_3_7pct": all(
                           0.03 <= v <= 0.07 for v in resplit["rate"].values())},
        }
    return out


def rerandomized_aa(frame: pd.DataFrame, splits: int, alpha: float = 0.05) -> dict[str, Any]:
    """False-positive rates of the readout on closed-loop data: both arms of the live A/A served
    the same lists, so a unit's outcomes do not depend on its arm, and re-splitting the units
    with ``splits`` new bucketing salts (the API's hash) gives that many A/A experiments on
    the same shoppers."""
    units = unit_table(frame, pre_columns=["pre_revenue"])
    names = units["unit"].astype(str).tolist()
    hits: dict[str, int] = {}
    started = time.perf_counter()
    for s in range(splits):
        arm = [choose_variant(bucket(f"resplit-{s}", EXPERIMENT, u), (0.5, 0.5)) for u in names]
        split = units.assign(variant=np.where(np.asarray(arm) == 1, "treatment", "control"))
        rows = pd.concat([compare_variants(split, alpha=alpha), compare_variants(
            split, metrics=["revenue_per_unit"], alpha=alpha,
            cuped={"revenue_per_unit": "pre_revenue"}).assign(metric="revenue_per_unit_cuped")])
        for metric, p_value in zip(rows["metric"], rows["p_value"], strict=True):
            hits[metric] = hits.get(metric, 0) + int(p_value < alpha)
    return {"splits": splits, "units": len(units), "alpha": alpha,
            "rate": {m: n / splits for m, n in hits.items()},
            "seconds": round(time.perf_counter() - started, 1)}


def aa(experiments: int, seed: int) -> dict[str, Any]:
    """A/A through the statistics (the vectorised path of benchmarks/aa_simulation.py)."""
    started = time.perf_counter()
    res = run_experiments(ShopSim(units=4000), experiments, seed=seed, with_cuped=False)
    fixed, peek, seq = res["rate_fixed"], res["rate_peeking_fixed"], res["rate_msprt"]
    return {
        "experiments": experiments, "units": 4000, "days": 14, "seed": seed,
        "fixed": fixed, "peeking_fixed_daily": peek, "msprt_daily": seq,
        "seconds": round(time.perf_counter() - started, 1),
        "checks": {
            "fixed_in_3.5_6.5pct": all(0.035 <= v <= 0.065 for v in fixed.values()),
            "msprt_at_most_6pct": all(v <= 0.06 for v in seq.values()),
            "peeking_exceeds_6pct": all(v > 0.06 for v in peek.values()),
        },
    }


def srm(work: Path, seed: int) -> dict[str, Any]:
    """52/48 on 20,000 units: the statistics over 1,000 seeds, and one split through a store."""
    stats_path = run_srm(units=20_000, share=0.52, seeds=1000, seed=seed)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"statistics": stats_path}
    for label, share in (("skewed_52_48", 0.52), ("fair_50_50", 0.5)):
        db = work / f"srm-{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        treated = rng.random(20_000) < share
        with SQLiteEventStore(db) as store:
            write_exposures(store, [Exposure(
                f"r{i}", EXPERIMENT, "treatment" if t else "control", f"u{i}", ("i1",), "v",
                datetime(2026, 3, 1, tzinfo=UTC)) for i, t in enumerate(treated)])
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                readout = experiment_results(store, WEIGHTS)
        out[label] = {"units": readout["srm"]["observed"], "p_value": readout["srm"]["p_value"],
                      "flagged": readout["srm"]["mismatch"]}
    out["checks"] = {
        "skewed_flagged_in_store_readout": out["skewed_52_48"]["flagged"],
        "fair_not_flagged_in_store_readout": not out["fair_50_50"]["flagged"],
        "skewed_flag_rate_above_95pct": stats_path["skewed"]["flag_rate"] > 0.95,
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/ab_proofs", help="working directory (the shop "
                        "and bundle are reused when present)")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--sim-users", type=int, default=3000)
    parser.add_argument("--sim-days", type=int, default=14)
    parser.add_argument("--visits-per-day", type=float, default=0.5)
    parser.add_argument("--latency-p99-ms", type=float, default=100.0)
    parser.add_argument("--aa-experiments", type=int, default=1000)
    parser.add_argument("--aa-live-users", type=int, default=1000,
                        help="shoppers of the closed-loop A/A run (hybrid in both arms; 0: skip)")
    parser.add_argument("--aa-resplits", type=int, default=1000,
                        help="re-randomisations of the live A/A's units")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-closed-loop", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {}
    if not args.skip_closed_loop:
        report["popularity_vs_hybrid"] = closed_loop(args, work)
    log(f"A/A: {args.aa_experiments} experiments")
    report["aa"] = aa(args.aa_experiments, args.seed)
    log("SRM")
    report["srm"] = srm(work, args.seed)
    parts = [*report.values(), report.get("popularity_vs_hybrid", {}).get("aa_live", {})]
    report["all_checks_pass"] = all(v for part in parts if isinstance(part, dict)
                                    for v in part.get("checks", {}).values())
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
