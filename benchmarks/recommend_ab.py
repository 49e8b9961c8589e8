"""In-process ``recommend`` latency of several checkouts of this project, like for like (JSON).

``recommend_bench.py`` measures one checkout; comparing its figures across commits compares
whatever each commit's benchmark did (an old one timed synthetic parts, a new one a fitted shop).
This script gives every checkout the same workload: one synthetic shop (``recommend_bench``'s,
made by the checkout given first), a bundle fitted on it by each checkout's own code with the
light benchmark config, and the same requests (4 in 5 from known shoppers, 0-2 cart items), one
thread. Rounds are interleaved (A, B, ..., A, B, ...) so that a machine getting slower or faster
hits every checkout alike; the summary gives each checkout's median over rounds and its ratio to
the first.

Usage (checkouts made with ``git worktree add DIR COMMIT``, each importable as is)::

    python benchmarks/recommend_ab.py --checkouts /work/before /work/main --items 100000 \\
        --rounds 5 --requests 2000 --cache DIR

Each measurement runs in a fresh process with the checkout first on ``sys.path``. Checkouts
from before the library refactor (283be56: ``pipelines/config.py`` and ``load_recommender``)
are fitted and loaded through their own API.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIGHT = {"mf": {"iterations": 10, "eval_every": 5},
         "content": {"epochs": 2, "max_pairs_per_epoch": 20000, "progress": False},
         "ranker_queries": 3000}

# run inside each checkout: fit a bundle, or time recommend() on it
CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
mode, shop, bundle = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
light = json.loads(sys.argv[4])
old = Path("pipelines/config.py").exists()      # before the library refactor (283be56)
if mode == "fit":
    if old:
        from pipelines.config import PipelineConfig
        from pipelines.train import train
        train(shop, bundle, PipelineConfig.model_validate(light), quiet=True)
    else:
        from recsys.config import TrainConfig
        from recsys.recommender import HybridRecommender
        HybridRecommender.fit(shop, TrainConfig.model_validate(light)).save(bundle)
    sys.exit()
from recsys.threads import set_thread_policy
set_thread_policy("serve")
if old:
    from recsys.recommender import Request, load_recommender
    rec, _ = load_recommender(bundle)
else:
    from recsys.recommender import HybridRecommender, Request
    rec = HybridRecommender.load(bundle)
n = int(sys.argv[5])
users = sorted(pd.read_parquet(shop / "events.parquet", columns=["user_id"])["user_id"]
               .astype(str).unique())[:5000]
item_ids = rec.items.external_ids
rng = np.random.default_rng(1)
requests = []
for i in range(n + 100):
    cart = tuple(item_ids[rng.integers(0, len(item_ids), rng.integers(0, 3))])
    requests.append(Request(user_id=users[i % len(users)] if i % 5 else f"anon{i}", cart=cart,
                            timestamp=pd.Timestamp("2026-02-01", tz="UTC"), device="mobile",
                            k=10))
lat = []
for i, request in enumerate(requests):
    t = time.perf_counter()
    rec.recommend(request)
    if i >= 100:                                # warm-up excluded
        lat.append((time.perf_counter() - t) * 1000)
print(json.dumps({q: round(float(np.percentile(lat, v)), 3)
                  for q, v in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99))}))
"""


def child(checkout: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=checkout, env=env,
                         check=True, capture_output=True, text=True)
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", type=Path, nargs="+", required=True)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cache", type=Path, required=True,
                        help="the shop and one bundle per checkout (kept for the next run)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    checkouts = [c.resolve() for c in args.checkouts]
    shop = args.cache / f"shop_{args.items}"
    if not (shop / "events.parquet").exists():
        child_code = ("import sys; from recsys.data.synthetic import ShopConfig, generate_shop; "
                      f"generate_shop(ShopConfig(users=20000, items={args.items}, days=30, "
                      f"seed=5)).save({str(shop)!r})")
        subprocess.run([sys.executable, "-c", child_code], cwd=checkouts[0], check=True,
                       env={**os.environ, "PYTHONPATH": str(checkouts[0])})
    light = json.dumps(LIGHT)
    bundles = {}
    for checkout in checkouts:
        bundle = args.cache / f"bundle_{args.items}_{checkout.name}"
        if not bundle.exists():
            t = time.perf_counter()
            child(checkout, "fit", str(shop), str(bundle), light)
            print(f"fitted {checkout} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        bundles[checkout] = bundle
    rounds: dict[str, list[dict[str, float]]] = {str(c): [] for c in checkouts}
    for r in range(args.rounds):
        for checkout in checkouts:
            figures = json.loads(child(checkout, "measure", str(shop), str(bundles[checkout]),
                                       light, str(args.requests)))
            rounds[str(checkout)].append(figures)
            print(f"round {r + 1} {checkout.name}: {figures}", file=sys.stderr)
    first = str(checkouts[0])
    median = {c: {q: statistics.median(f[q] for f in runs) for q in runs[0]}
              for c, runs in rounds.items()}
    print(json.dumps({"benchmark": "recommend_ab", "items": args.items,
                      "requests": args.requests, "rounds": rounds, "median": median,
                      "ratio_to_first": {c: {q: round(m[q] / median[first][q], 3) for q in m}
                                         for c, m in median.items()}}, indent=2))


if __name__ == "__main__":
    main()
