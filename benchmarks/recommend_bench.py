"""In-process ``Recommender.recommend`` latency at catalog scale (JSON).

Training a full bundle on a 1M-item catalog takes far longer than the thing measured here, so
the fitted parts are synthetic but real objects at full size: ALS item/user factors and content
embeddings drawn from a clustered distribution, a co-purchase matrix, item statistics, user
histories, and a LightGBM ranker trained on random features with the production settings. The
request path (eligibility, FAISS retrieval, candidate merge, features, ranker, rules, reasons)
is the production code, single-threaded as served.

Usage: ``python benchmarks/recommend_bench.py [--items 10000 100000 1000000] [--requests 2000]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.copurchase import CoPurchase
from recsys.data.idmap import IdMap
from recsys.features import FEATURES, ItemStats
from recsys.history import HistoryIndex
from recsys.models.content import ContentModel
from recsys.models.mf import MFConfig, MFModel
from recsys.models.ranker import Ranker, RankerConfig
from recsys.recommender import HybridConfig, Recommender, Request
from recsys.retrieval import ItemIndex, RetrievalConfig, recall_at
from recsys.threads import set_thread_policy


def clustered(rng: np.random.Generator, n: int, dim: int, centers: np.ndarray) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def build(n_items: int, n_users: int = 20000, dim: int = 64, seed: int = 0
          ) -> tuple[Recommender, list[str], dict[str, object]]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((256, dim))
    item_f = clustered(rng, n_items, dim, centers)
    user_f = clustered(rng, n_users, dim, centers)
    emb = clustered(rng, n_items, dim, rng.standard_normal((256, dim)))
    items = IdMap(np.char.add("i", np.arange(n_items).astype(str)).astype(object))
    users = IdMap(np.char.add("u", np.arange(n_users).astype(str)).astype(object))
    n_cat = 50
    item_table = pd.DataFrame({
        C.ITEM_ID: items.external_ids, C.TITLE: items.external_ids,
        C.CATEGORY: (rng.integers(0, n_cat, n_items)).astype(str),
        C.BRAND: rng.integers(0, 500, n_items).astype(str),
        C.PRICE: np.exp(rng.normal(3, 0.7, n_items)), C.DESCRIPTION: "",
        C.IN_STOCK: rng.random(n_items) > 0.03,
        C.FIRST_SEEN: pd.Timestamp("2025-01-01", tz="UTC")})
    mf = MFModel(MFConfig(factors=dim))
    mf._set_factors(user_f, item_f)          # noqa: SLF001 - benchmark builds a fitted model
    mf._prepare()                            # noqa: SLF001
    content = ContentModel()
    content.item_embeddings_ = emb
    pop = rng.zipf(1.3, n_items).astype(np.float64)
    n_ev = n_users * 30
    ev = pd.DataFrame({
        C.USER_ID: pd.Categorical.from_codes(rng.integers(0, n_users, n_ev),
                                             users.external_ids.astype(str)),
        C.ITEM_ID: pd.Categorical.from_codes(
            rng.choice(n_items, n_ev, p=pop / pop.sum()), items.external_ids.astype(str)),
        C.TIMESTAMP: pd.Timestamp("2025-06-01", tz="UTC")
        - pd.to_timedelta(rng.integers(0, 60 * 86400, n_ev), unit="s"),
        C.EVENT_TYPE: pd.Categorical(rng.choice(list(C.EVENT_TYPES), n_ev,
                                                p=[0.7, 0.2, 0.06, 0.04]),
                                     categories=list(C.EVENT_TYPES)),
        C.QUANTITY: np.ones(n_ev, np.int32), C.PRICE: 10.0,
        C.SESSION_ID: pd.Categorical(rng.integers(0, n_ev // 5, n_ev).astype(str))})
    history = HistoryIndex.from_events(ev, items)
    ev["item_idx"] = items.to_internal(ev[C.ITEM_ID])
    ev["user_idx"] = users.to_internal(ev[C.USER_ID])
    weights = np.ones(n_ev, np.float32)
    stats = ItemStats.fit(ev, item_table, weights, pd.Timestamp("2025-06-01", tz="UTC"))
    co = CoPurchase().fit(ev, n_items)
    x = rng.standard_normal((20000, len(FEATURES))).astype(np.float32)
    y = (rng.random(20000) < 0.05 + 0.1 * (x[:, 0] > 1)).astype(np.int32) * rng.integers(1, 5,
                                                                                            20000)
    groups = np.full(100, 200)
    ranker = Ranker(RankerConfig(max_rounds=200, early_stopping_rounds=200)).fit(
        x, y, groups, list(FEATURES))
    t = time.perf_counter()
    sample_users = user_f[rng.choice(n_users, 1000, replace=False)]
    config = HybridConfig()
    indexes = {"cf": ItemIndex.build(item_f, RetrievalConfig(), sample_users),
               "content": ItemIndex.build(emb, RetrievalConfig(),
                                          clustered(rng, 1000, dim, centers))}
    build_s = time.perf_counter() - t
    rec = Recommender(items=items, item_table=item_table, mf=mf, content=content, copurchase=co,
                      history=history, stats=stats, weights=np.array([1, 2, 4, 8], np.float32),
                      config=config, ranker=ranker, mf_users=users, indexes=indexes)
    # held-out recall of each index against exact search at the candidate depth
    recall = {}
    for name, vectors, queries in (("cf", item_f, user_f[:500]), ("content", emb, emb[:500])):
        ids, _ = indexes[name].search(queries, 200)
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :200]
        recall[name] = round(recall_at(ids, exact), 4)
    info = {"index_build_seconds": round(build_s, 1), "recall_at_200": recall,
            "indexes": {n: i.build_info_ for n, i in indexes.items()},
            "ranker_trees": ranker.best_iteration_}
    return rec, list(users.external_ids[:5000]), info


def measure(rec: Recommender, users: list[str], n_requests: int, seed: int = 1
            ) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    items = rec.items.external_ids
    lat, sizes = [], []
    for i in range(n_requests + 100):
        cart = tuple(items[rng.integers(0, len(items), rng.integers(0, 3))])
        request = Request(user_id=users[i % len(users)] if i % 5 else f"anon{i}", cart=cart,
                          timestamp=pd.Timestamp("2025-06-02", tz="UTC"), device="mobile", k=10)
        t = time.perf_counter()
        response = rec.recommend(request)
        dt = time.perf_counter() - t
        if i >= 100:                           # warm-up excluded
            lat.append(dt * 1000)
            sizes.append(len(response.items))
    pools = [len(rec.prepare(Request(user_id=u)).pool) for u in users[:50]]
    return {"p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "mean_candidates": round(float(np.mean(pools)), 1), "requests": n_requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    set_thread_policy("serve")
    results = []
    for n in args.items:
        rec, users, info = build(n)
        results.append({"items": n, **measure(rec, users, args.requests), **info})
        del rec
    print(json.dumps({"benchmark": "recommend", "threads": 1, "results": results}, indent=2))


if __name__ == "__main__":
    main()
