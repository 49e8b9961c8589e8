"""In-process ``HybridRecommender.recommend`` latency at catalog scale (JSON).

For each catalog size: a synthetic shop (``recsys.data.synthetic``, 20k shoppers, 30 days,
about 1M events), a hybrid fitted on it by ``HybridRecommender.fit`` with a light config (few
ALS sweeps and content epochs: the latency of a request does not depend on how long the models
trained), then single-threaded requests as served: 4 in 5 from known shoppers, 1 in 5 anonymous,
each with 0-2 cart items, through the production request path (eligibility, FAISS retrieval,
candidate merge, features, ranker, rules, reasons).

Usage: ``python benchmarks/recommend_bench.py [--items 10000 100000] [--requests 2000]
[--cache DIR]`` (``--cache`` keeps the shops and bundles for the next run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import TrainConfig
from recsys.data.synthetic import ShopConfig, generate_shop
from recsys.recommender import HybridRecommender, Request
from recsys.threads import set_thread_policy

LIGHT = {"mf": {"iterations": 10, "eval_every": 5},
         "content": {"epochs": 2, "max_pairs_per_epoch": 20000, "progress": False},
         "ranker_queries": 3000}


def shop_and_bundle(n_items: int, cache: Path, seed: int = 5) -> tuple[Path, Path, float]:
    """The shop and the fitted bundle for ``n_items`` (made once per cache directory)."""
    shop, bundle = cache / f"shop_{n_items}", cache / f"bundle_{n_items}"
    if not (shop / "events.parquet").exists():
        generate_shop(ShopConfig(users=20000, items=n_items, days=30, seed=seed)).save(shop)
    fit_s = 0.0
    if not (bundle / "manifest.json").exists():
        t = time.perf_counter()
        HybridRecommender.fit(shop, TrainConfig.model_validate(LIGHT)).save(bundle)
        fit_s = time.perf_counter() - t
    return shop, bundle, fit_s


def request_users(shop: Path, n: int = 5000) -> list[str]:
    """The same shoppers whatever the code under test: the first ``n`` ids, sorted."""
    users = pd.read_parquet(shop / "events.parquet", columns=["user_id"])["user_id"]
    return sorted(users.astype(str).unique())[:n]


def requests(item_ids: np.ndarray, users: list[str], n: int, seed: int = 1) -> list[Request]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cart = tuple(item_ids[rng.integers(0, len(item_ids), rng.integers(0, 3))])
        out.append(Request(user_id=users[i % len(users)] if i % 5 else f"anon{i}", cart=cart,
                           timestamp=pd.Timestamp("2026-02-01", tz="UTC"), device="mobile",
                           k=10))
    return out


def measure(rec: HybridRecommender, users: list[str], n_requests: int) -> dict[str, float]:
    lat = []
    for i, request in enumerate(requests(rec.items.external_ids, users, n_requests + 100)):
        t = time.perf_counter()
        rec.recommend(request)
        if i >= 100:                           # warm-up excluded
            lat.append((time.perf_counter() - t) * 1000)
    pools = [len(rec.prepare(Request(user_id=u)).pool) for u in users[:50]]
    return {"p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "mean_candidates": round(float(np.mean(pools)), 1), "requests": n_requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cache", type=Path, help="keep shops and bundles here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        for n in args.items:
            shop, bundle, fit_s = shop_and_bundle(n, cache)
            set_thread_policy("serve")
            rec = HybridRecommender.load(bundle)
            assert rec.manifest is not None
            info = {"items": n, "fit_seconds": round(fit_s, 1),
                    "indexes": rec.manifest.retrieval}
            results.append({**info, **measure(rec, request_users(shop), args.requests)})
            del rec
    print(json.dumps({"benchmark": "recommend", "threads": 1, "results": results}, indent=2))


if __name__ == "__main__":
    main()
