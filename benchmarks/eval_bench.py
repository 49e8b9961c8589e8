"""Wall time of ``recsys evaluate`` (hybrid + popularity, ALS and content baselines, k = 5/10/20,
segments, 2,000-resample bootstrap CIs and paired tests, report files), split by stage.

    python benchmarks/eval_bench.py --data /tmp/or --bundle /tmp/or_bundle     # Online Retail
    python benchmarks/eval_bench.py --synthetic-users 100000 --workdir /tmp/eval100k

The synthetic mode generates ``ShopConfig(users=N, items=5000, days=30)`` into
``WORKDIR/data`` and trains a bundle with a fast config into ``WORKDIR/bundle`` (both reused when
present; ``--bundle`` points at an existing one instead). Prints one JSON object: users
evaluated, total and per-stage seconds, per-model recommendation time per user, and the share of
the run spent in per-user ``HybridRecommender.recommend`` calls.
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
    """Small models: the benchmark times evaluation, not training."""
    from recsys.config import TrainConfig

    return TrainConfig.model_validate({
        "mf": {"iterations": 10, "factors": 32, "eval_every": 5},
        "content": {"epochs": 1, "max_pairs_per_epoch": 20000, "batch_size": 1024, "dim": 32,
                    "progress": False},
        "ranker_queries": 2000,
        "hybrid": {"ranker": {"max_rounds": 100}},
    })


def synthetic(workdir: Path, users: int, items: int, days: int, bundle: Path | None
              ) -> tuple[Path, Path, dict[str, float]]:
    """Generate the shop and train its bundle unless they exist; return (data, bundle, times)."""
    from pipelines.train import train
    from recsys.data.synthetic import ShopConfig, generate_shop

    data = workdir / "data"
    times: dict[str, float] = {}
    if not (data / "events.parquet").exists():
        t = time.perf_counter()
        generate_shop(ShopConfig(users=users, items=items, days=days, seed=0)).save(data)
        times["generate_seconds"] = round(time.perf_counter() - t, 1)
    if bundle is None:
        bundle = workdir / "bundle"
        if not (bundle / "manifest.json").exists():
            t = time.perf_counter()
            train(data, bundle, fast_config(), quiet=True)
            times["train_seconds"] = round(time.perf_counter() - t, 1)
    return data, bundle, times


def bench(data: Path, bundle: Path, *, max_users: int | None, report: Path | None
          ) -> dict[str, Any]:
    from pipelines.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        out = report or Path(tmp)
        t = time.perf_counter()
        result = evaluate(data, bundle, report_dir=out, max_users=max_users, quiet=True)
        total = time.perf_counter() - t
    meta = result["meta"]
    users = meta["users"]
    rec_seconds = meta["recommend_seconds"]
    return {
        "data": str(data), "bundle": str(bundle), "users": users,
        "models": meta["models"], "ks": meta["ks"],
        "seconds_total": round(total, 2),
        "stage_seconds": meta["stage_seconds"],
        "recommend_ms_per_user": {n: round(1000 * s / users, 3) for n, s in rec_seconds.items()},
        "recommend_share": round(sum(rec_seconds.values()) / total, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "headline": {n: {m: v.get("estimate") for m, v in values.items()}
                     for n, values in result["headline"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="dataset directory")
    p.add_argument("--bundle", type=Path, help="bundle directory")
    p.add_argument("--synthetic-users", type=int, help="generate a synthetic shop of N users")
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--workdir", type=Path, default=Path("runs/eval_bench"))
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--report", type=Path, default=None, help="keep the report here")
    args = p.parse_args(argv)
    extra: dict[str, Any] = {}
    if args.synthetic_users:
        data, bundle, extra = synthetic(args.workdir, args.synthetic_users, args.items,
                                        args.days, args.bundle)
        extra["synthetic"] = {"users": args.synthetic_users, "items": args.items,
                              "days": args.days}
    elif args.data and args.bundle:
        data, bundle = args.data, args.bundle
    else:
        p.error("give --data and --bundle, or --synthetic-users")
    out = {**bench(data, bundle, max_users=args.max_users, report=args.report), **extra}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
