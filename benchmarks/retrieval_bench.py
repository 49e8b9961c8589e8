"""Retrieval speed and recall: exact vs IVF item indexes, one FAISS thread, printed as JSON.

For each catalog size (clustered random vectors, d=64) it builds the exact and the IVF index,
then times 1000 single-vector searches at k=200 and measures recall@200 against exact search on
held-out queries from the same distribution. ``chosen`` is what the default
:class:`~recsys.retrieval.RetrievalConfig` picks; the exact-vs-IVF latencies are the measurement
behind its ``exact_max_items``. ``filtered`` times the chosen index under allowed masks of
decreasing share plus a 50-item exclude list (the path taken is reported too).

    python benchmarks/retrieval_bench.py                 # 10k, 100k, 1M (a few minutes)
    python benchmarks/retrieval_bench.py --sizes 20000 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import faiss
import numpy as np

from recsys.retrieval import ItemIndex, RetrievalConfig, recall_at
from recsys.threads import set_thread_policy

DIM = 64
K = 200
N_QUERIES = 1000
SHARES = (0.5, 0.1, 0.05, 0.02, 0.01)


def clustered(n: int, n_queries: int, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Items and two query sets (tuning, evaluation) from one gaussian mixture of sqrt(n)
    clusters: shop catalogs and their users group into categories."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(10, int(np.sqrt(n))), dim), dtype=np.float32)

    def draw(m: int) -> np.ndarray:
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        return np.ascontiguousarray(centers[rng.integers(0, len(centers), m)] + 0.5 * noise)

    return draw(n), draw(n_queries), draw(n_queries)


def latencies_ms(fn: Any, queries: np.ndarray) -> dict[str, float]:
    """Wall-clock p50/p99 and CPU-time p50 of ``fn(query)`` over single queries, in ms.

    The search runs on one thread, so the thread's CPU time is its cost even when other
    processes share the cores (wall time then includes waiting for a core)."""
    fn(queries[0])  # warm-up
    wall = np.empty(len(queries))
    cpu = np.empty(len(queries))
    for i, q in enumerate(queries):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn(q)
        wall[i], cpu[i] = time.perf_counter() - t0, time.thread_time() - c0
    wall *= 1e3
    cpu *= 1e3
    return {"p50_ms": round(float(np.percentile(wall, 50)), 3),
            "p99_ms": round(float(np.percentile(wall, 99)), 3),
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3)}


def bench_kind(x: np.ndarray, tune: np.ndarray, evaluate: np.ndarray, truth: np.ndarray,
               config: RetrievalConfig) -> tuple[ItemIndex, dict[str, Any]]:
    t0 = time.perf_counter()
    index = ItemIndex.build(x, config, tune)
    build_s = time.perf_counter() - t0
    ids, _ = index.search(evaluate, K)
    row = {"build_s": round(build_s, 2), **latencies_ms(lambda q: index.search(q, K), evaluate),
           "recall_at_200": round(recall_at(ids, truth), 4),
           "build_info": index.build_info_}
    return index, row


def bench_filtered(index: ItemIndex, evaluate: np.ndarray, seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    n = index.n_items
    rows = []
    for share in SHARES:
        allowed = rng.random(n) < share
        exclude = rng.choice(n, 50, replace=False)
        queries = evaluate[:300]
        ids, _ = index.search(queries, K, allowed=allowed, exclude=exclude)
        ok = ids[ids >= 0]
        assert allowed[ok].all() and not np.isin(ok, exclude).any()
        eligible = allowed.copy()
        eligible[exclude] = False
        cand = np.flatnonzero(eligible)
        _, pos = faiss.knn(queries, np.ascontiguousarray(index.vectors_[cand]), K,
                           metric=faiss.METRIC_INNER_PRODUCT)
        truth = np.where(pos >= 0, cand[np.maximum(pos, 0)], -1)
        path = ("exact_subset" if eligible.sum() < index.config.restrictive_share * n
                else "faiss_selector_postfilter")
        lat = latencies_ms(lambda q, a=allowed, e=exclude: index.search(q, K, allowed=a,
                                                                         exclude=e), queries)
        rows.append({"allowed_share": share, "path": path, **lat,
                     "recall_at_200": round(recall_at(ids, truth), 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-filtered", action="store_true", help="skip the filtered timings")
    args = parser.parse_args()
    set_thread_policy("serve")  # one FAISS/BLAS thread, as in serving

    default = RetrievalConfig()
    out: dict[str, Any] = {
        "dim": DIM, "k": K, "queries": N_QUERIES, "faiss_threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__, "machine": f"{platform.machine()} x{os.cpu_count()}",
        "exact_max_items": default.exact_max_items, "sizes": []}
    for n in args.sizes:
        x, tune, evaluate = clustered(n, N_QUERIES)
        _, truth = faiss.knn(evaluate, x, K, metric=faiss.METRIC_INNER_PRODUCT)
        _, exact = bench_kind(x, tune, evaluate, truth, default.model_copy(
            update={"exact_max_items": n}))
        ivf_index, ivf = bench_kind(x, tune, evaluate, truth, default.model_copy(
            update={"exact_max_items": 0}))
        chosen = "exact" if n <= default.exact_max_items else "ivf"
        row: dict[str, Any] = {"n_items": n, "chosen": chosen, "exact": exact, "ivf": ivf}
        if not args.no_filtered:
            chosen_index = ivf_index if chosen == "ivf" else ItemIndex.build(x, default, tune)
            row["filtered"] = bench_filtered(chosen_index, evaluate)
        out["sizes"].append(row)
        print(json.dumps(row), flush=True, file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
