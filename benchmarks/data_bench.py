"""Data layer speed and memory: generate, save, load+validate, split, build the matrix.

Usage: ``python benchmarks/data_bench.py [--events 1000000 10000000]``. Each size runs in a
fresh subprocess so peak RSS is that size's own; prints one JSON document. Peak RSS is the
process high-water mark after each step (so it only grows step to step).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def run_one(n_events: int) -> dict[str, object]:
    from recsys.data.idmap import IdMap
    from recsys.data.interactions import InteractionConfig, build_matrix
    from recsys.data.split import summarize, time_split
    from recsys.data.synthetic import ShopConfig, generate_shop
    from recsys.data.validate import load_dataset

    steps: dict[str, dict[str, float]] = {}

    def step(name: str, started: float) -> None:
        steps[name] = {"seconds": round(time.perf_counter() - started, 2),
                       "peak_rss_gib": rss_gib()}

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        shop = generate_shop(ShopConfig.for_target_events(n_events, seed=7))
        step("generate", t)
        n = len(shop.events)
        t = time.perf_counter()
        shop.save(tmp)
        del shop
        step("save", t)
        t = time.perf_counter()
        dataset = load_dataset(tmp)
        step("load_validate", t)
        t = time.perf_counter()
        split = time_split(dataset.events)
        summarize(split)
        step("split", t)
        t = time.perf_counter()
        users = IdMap.from_values(split.train["user_id"])
        items = IdMap(dataset.items["item_id"].to_numpy())
        matrix = build_matrix(split.train, users, items, InteractionConfig(half_life_days=30))
        step("matrix", t)
    return {"events": n, "matrix_nnz": int(matrix.nnz), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    results = []
    for n in args.events:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(n)],
                             check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps({"benchmark": "data", "cpus": 2, "results": results}, indent=2))


if __name__ == "__main__":
    main()
