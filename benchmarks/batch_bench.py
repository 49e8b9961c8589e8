"""``recsys recommend`` batch scoring rate, 1 worker vs N, interleaved (JSON).

A synthetic shop (60,000 shoppers, 10,000 items, 30 days, about 3M events) and a hybrid fitted
on it with a light config (the cost of a request does not depend on how long the models
trained), made once per ``--cache`` directory. Then ``pipelines.recommend.recommend_batch``
(what ``recsys recommend`` runs: bundle load, every shopper through the serving code, the CSV)
on the first ``--shoppers`` shoppers by id, with 1 worker and with N, alternating, ``--repeats``
times; the files must be identical. Each run reports its wall time, the CPU time of this
process and its workers, and the cores other processes kept busy meanwhile (from
``/proc/stat``: the machine is shared, so a run is read against that load).

``--evaluate`` times ``recsys evaluate``'s scoring loop instead: one backtest fold fitted
(light config) on a smaller shop (``EVAL_SHOP``), then every pipeline of the default backtest
(the hybrid and 7 baselines, plus popularity for serendipity) on the 3 surfaces at k = 5/10/20
for ``--shoppers`` window shoppers (``evaluation.offline.evaluate_pipelines`` on one
``scoring_pool``, as ``backtest`` calls it), with 1 worker and with N alternating; the lists
must be identical.

Usage: ``flock /work/bench.lock python benchmarks/batch_bench.py [--shoppers 20000]
[--workers 1 2] [--repeats 3] [--cache DIR] [--evaluate]``
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipelines.recommend import recommend_batch
from recsys.config import TrainConfig
from recsys.data.synthetic import ShopConfig, generate_shop
from recsys.recommender import HybridRecommender

LIGHT = {"mf": {"iterations": 10, "eval_every": 5},
         "content": {"epochs": 2, "max_pairs_per_epoch": 20000, "progress": False},
         "ranker_queries": 3000}
SHOP = ShopConfig(users=60000, items=10000, days=30, seed=5)
EVAL_SHOP = ShopConfig(users=10000, items=3000, days=30, seed=5)


def shop_and_bundle(cache: Path) -> tuple[Path, Path]:
    """The shop and its bundle (made once per cache directory)."""
    shop, bundle = cache / "shop", cache / "bundle"
    if not (shop / "events.parquet").exists():
        generate_shop(SHOP).save(shop)
    if not (bundle / "manifest.json").exists():
        HybridRecommender.fit(shop, TrainConfig.model_validate(LIGHT)).save(bundle)
    return shop, bundle


def _busy_seconds() -> float:
    """CPU seconds every core spent busy since boot (all processes, from /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def one_run(bundle: Path, users: Path, out: Path, workers: int) -> dict[str, float]:
    busy, own, started = _busy_seconds(), _own_seconds(), time.perf_counter()
    rows = recommend_batch(bundle, users, out, k=10, workers=workers)
    wall = time.perf_counter() - started
    own = _own_seconds() - own
    n = sum(1 for _ in users.open()) - 1
    return {"workers": workers, "shoppers": n, "rows": rows, "wall_s": round(wall, 2),
            "shoppers_per_s": round(n / wall, 1), "cpu_s": round(own, 2),
            "other_load_cores": round(max(_busy_seconds() - busy - own, 0.0) / wall, 2)}


def evaluate_runs(cache: Path, shoppers: int, workers: list[int], repeats: int
                  ) -> tuple[list[dict[str, float]], bool, int]:
    """Runs of the backtest's scoring loop on one fitted fold; whether the lists agreed."""
    import numpy as np

    from evaluation.backtest import DEFAULT_BASELINES, backtest
    from evaluation.offline import evaluate_pipelines, scoring_pool
    from recsys.data.validate import load_dataset
    from recsys.recommender import SURFACES

    shop = cache / "eval_shop"
    if not (shop / "events.parquet").exists():
        generate_shop(EVAL_SHOP).save(shop)
    models = ("hybrid", *DEFAULT_BASELINES)
    fold = backtest(load_dataset(shop), TrainConfig.model_validate(LIGHT), models=("hybrid",),
                    ks=(5,), max_users=shoppers)[0]
    n = len(fold.window.users)
    runs, first, same = [], None, True
    for repeat in range(repeats):
        for w in workers:
            busy, own, started = _busy_seconds(), _own_seconds(), time.perf_counter()
            with scoring_pool(fold.rec, fold.window, w) as pool:     # as backtest() does
                lists = [r.lists[k] for s in SURFACES
                         for r in evaluate_pipelines(fold.rec, fold.window, models, (5, 10, 20),
                                                     surface=s, workers=pool).values()
                         for k in (5, 10, 20)]
            wall = time.perf_counter() - started
            own = _own_seconds() - own
            if first is None:
                first = lists
            same = same and all(np.array_equal(a, b) for a, b in zip(first, lists, strict=True))
            # one list per shopper, pipeline (the models and popularity) and surface
            asked = n * (len(models) + 1) * len(SURFACES)
            runs.append({"repeat": repeat, "workers": w, "shoppers": n, "lists": asked,
                         "wall_s": round(wall, 2), "lists_per_s": round(asked / wall, 1),
                         "cpu_s": round(own, 2), "other_load_cores": round(
                             max(_busy_seconds() - busy - own, 0.0) / wall, 2)})
            print(json.dumps(runs[-1]), flush=True)
    return runs, same, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", type=int, default=20000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the shop and bundle here for the next run")
    parser.add_argument("--evaluate", action="store_true",
                        help="time the backtest's scoring loop instead of recsys recommend")
    args = parser.parse_args()
    if args.evaluate:
        with tempfile.TemporaryDirectory() as tmp:
            cache = args.cache or Path(tmp)
            runs, same, n = evaluate_runs(cache, args.shoppers, args.workers, args.repeats)
        summarise(runs, "lists_per_s", {"shop": EVAL_SHOP, "shoppers": n, "repeats":
                                        args.repeats, "identical_lists": same}, args.workers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        shop, bundle = shop_and_bundle(cache)
        ids = pd.read_parquet(shop / "events.parquet", columns=["user_id"])["user_id"]
        shoppers = sorted(ids.astype(str).unique())[: args.shoppers]
        users = Path(tmp) / "users.txt"
        users.write_text("user_id\n" + "\n".join(shoppers) + "\n")
        runs = []
        for repeat in range(args.repeats):
            for workers in args.workers:
                out = Path(tmp) / f"out_{workers}.csv"
                runs.append({"repeat": repeat, **one_run(bundle, users, out, workers)})
                print(json.dumps(runs[-1]), flush=True)
        outs = [Path(tmp) / f"out_{w}.csv" for w in args.workers]
        same = all(filecmp.cmp(outs[0], o, shallow=False) for o in outs[1:])
    summarise(runs, "shoppers_per_s", {"shop": SHOP, "shoppers": len(shoppers),
                                       "repeats": args.repeats, "identical_output": same},
              args.workers)


def summarise(runs: list[dict[str, float]], rate: str, head: dict[str, object],
              workers: list[int]) -> None:
    """The medians over the repeats, and each worker count's speed-up over the first."""
    median = {w: statistics.median(r[rate] for r in runs if r["workers"] == w) for w in workers}
    shop = head.pop("shop")
    assert isinstance(shop, ShopConfig)
    print(json.dumps({
        "shop": shop.model_dump(include={"users", "items", "days", "seed"}), **head,
        f"median_{rate}": median,
        "speedup_vs_first": {w: round(v / median[workers[0]], 2) for w, v in median.items()},
        "median_other_load_cores": statistics.median(r["other_load_cores"] for r in runs),
        "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
