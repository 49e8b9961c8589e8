"""Wall time of ``recsys evaluate``, the backtest (fit with the production pipeline before the
cutoff, recommend at it on every surface for the hybrid and the baselines, score, bootstrap
intervals, report files), split by stage.

    python benchmarks/eval_bench.py                                  # small synthetic shop
    python benchmarks/eval_bench.py --data /tmp/or --config configs/train.toml  # Online Retail
    python benchmarks/eval_bench.py --synthetic-users 100000 --items 5000 --workdir /tmp/e100k

Without ``--data`` it generates ``ShopConfig(users=N, items=M, days=D, seed=0)`` into
``WORKDIR/data`` (reused when present; default 2,000 users, 1,000 items, 30 days: about 45 s
on 2 cores, 30 s of it the fit). The models are fitted with a fast config unless ``--config``
names a training TOML: the benchmark is about the evaluation around the fit. The off-policy
section (public bandit logs, independent of the data) is not run. Prints one JSON object:
shoppers scored, total and per-stage seconds (per fold: fit, recommend and score; then
intervals and report), per-model recommendation time per shopper on ``for_you``, peak RSS, the
verdict and NDCG per surface.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def fast_config() -> Any:
    """Small models: the benchmark times the evaluation around the fit."""
    from recsys.config import TrainConfig

    return TrainConfig.model_validate({
        "mf": {"iterations": 10, "factors": 32, "eval_every": 5},
        "content": {"epochs": 1, "max_pairs_per_epoch": 20000, "batch_size": 1024, "dim": 32,
                    "progress": False},
        "ranker_queries": 2000,
        "hybrid": {"ranker": {"max_rounds": 100}},
    })


def synthetic(data: Path, users: int, items: int, days: int) -> dict[str, Any]:
    """Generate the shop into ``data`` unless it is there; what was generated and how long."""
    from recsys.data.synthetic import ShopConfig, generate_shop

    out: dict[str, Any] = {"synthetic": {"users": users, "items": items, "days": days}}
    if not (data / "events.parquet").exists():
        t = time.perf_counter()
        generate_shop(ShopConfig(users=users, items=items, days=days, seed=0)).save(data)
        out["generate_seconds"] = round(time.perf_counter() - t, 1)
    return out


def bench(data: Path, *, config: Any, cutoff: str | None, folds: int, max_users: int | None,
          n_resamples: int, report: Path | None) -> dict[str, Any]:
    from pipelines.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        out = report or Path(tmp)
        t = time.perf_counter()
        result = evaluate(data, report_dir=out, config=config, cutoff=cutoff, folds=folds,
                          max_users=max_users, n_resamples=n_resamples, open_bandit=None,
                          quiet=True)
        total = time.perf_counter() - t
    meta = result["meta"]
    users = meta["users"]
    fold_seconds = [f["seconds"] for f in meta["folds"]]
    backtest = sum(sum(s.values()) for s in fold_seconds)
    rec_seconds = meta["recommend_seconds"]
    k = meta["headline_k"]
    return {
        "data": str(data), "users": users, "folds": len(fold_seconds),
        "cutoffs": [f["start"] for f in meta["folds"]],
        "models": meta["models"], "ks": meta["ks"], "prices": meta["prices"],
        "seconds_total": round(total, 2),
        "stage_seconds": {"folds": fold_seconds,
                          "intervals_and_report": round(total - backtest, 2)},
        "recommend_ms_per_user": {n: round(1000 * s / users, 3) for n, s in rec_seconds.items()},
        "recommend_and_score_share": round(
            sum(s.get("recommend_and_score", 0.0) for s in fold_seconds) / total, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "verdict": result["verdict"]["sentence"],
        f"ndcg@{k}": {s: {n: v.get(f"ndcg@{k}") for n, v in d["metrics"].items()}
                      for s, d in result["surfaces"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    from recsys.config import load_train_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="dataset directory (default: a synthetic shop)")
    p.add_argument("--synthetic-users", type=int, default=2000)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--workdir", type=Path, default=Path("runs/eval_bench"),
                   help="where the synthetic shop is generated")
    p.add_argument("--config", help="training TOML (default: a fast config)")
    p.add_argument("--cutoff", help="the backtest's cutoff (default: 85%% of event time)")
    p.add_argument("--folds", type=int, default=1)
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--report", type=Path, default=None, help="keep the report here")
    args = p.parse_args(argv)
    extra: dict[str, Any] = {}
    data = args.data
    if data is None:
        data = args.workdir / "data"
        extra = synthetic(data, args.synthetic_users, args.items, args.days)
    config = load_train_config(args.config) if args.config else fast_config()
    out = {**bench(data, config=config, cutoff=args.cutoff, folds=args.folds,
                   max_users=args.max_users, n_resamples=args.resamples, report=args.report),
           **extra}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
