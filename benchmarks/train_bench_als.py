"""ALS training cost through ``MFModel.fit`` versus ``implicit`` called directly.

Budget: the project's wrapper may cost at most 1.15x implicit on the same confidence matrix
with the same factors, regularization, iterations, threads and seed. Runs alternate (direct,
wrapped, direct, ...) so machine drift hits both; the median of ``repeats`` runs is compared.

    python benchmarks/train_bench_als.py                  # synthetic 50k x 20k, ~2M nnz
    python benchmarks/train_bench_als.py data/online_retail --factors 64 --iterations 15

Prints one JSON object; ``ratio`` is median(recsys) / median(implicit) wall time, ``cpu_ratio``
the same for process CPU time (steadier when other jobs share the machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.data.idmap import IdMap
from recsys.models.base import TrainingData
from recsys.models.mf import MFConfig, MFModel
from recsys.threads import training_threads


def synthetic_matrix(n_users: int = 50_000, n_items: int = 20_000, nnz: int = 2_000_000,
                     seed: int = 0) -> sp.csr_matrix:
    """Power-law users and items (a few heavy buyers and best-sellers, a long tail), weights
    drawn from the funnel weights 1/2/4/8; duplicates summed, so nnz ends slightly below."""
    rng = np.random.default_rng(seed)

    def power_law(n: int, exponent: float, size: int) -> np.ndarray:
        p = 1.0 / np.arange(1, n + 1) ** exponent
        return rng.choice(n, size=size, p=p / p.sum())

    draws = int(nnz * 1.08)  # oversample: duplicate pairs collapse
    rows = power_law(n_users, 0.5, draws)
    cols = power_law(n_items, 0.8, draws)
    data = rng.choice(np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32), size=draws,
                      p=[0.7, 0.15, 0.1, 0.05])
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def dataset_matrix(directory: str | Path) -> sp.csr_matrix:
    """The weighted matrix of an imported dataset directory (all events, default weights)."""
    from recsys.data.training import prepare_training
    from recsys.data.validate import load_dataset

    dataset = load_dataset(directory)
    return prepare_training(dataset.events, dataset.items).matrix


def _training_data(matrix: sp.csr_matrix) -> TrainingData:
    """MFModel.fit reads only the matrix and the id-map sizes; the rest is left empty."""
    users = IdMap(np.arange(matrix.shape[0]).astype(str))
    items = IdMap(np.arange(matrix.shape[1]).astype(str))
    return TrainingData(matrix, users, items, pd.DataFrame(), pd.DataFrame(),
                        pd.Timestamp("2024-01-01", tz="UTC"))


def bench_als(matrix: sp.csr_matrix, *, factors: int = 64, iterations: int = 15,
              regularization: float = 0.01, alpha: float = 1.0, repeats: int = 3,
              seed: int = 0) -> dict[str, Any]:
    """Median seconds of MFModel.fit vs implicit's fit, and their ratio."""
    from implicit.cpu.als import AlternatingLeastSquares

    threads = training_threads()
    config = MFConfig(factors=factors, iterations=iterations, regularization=regularization,
                      alpha=alpha, seed=seed)
    data = _training_data(matrix)
    # implicit gets the already-transformed confidence matrix (untimed); MFModel builds it
    # inside fit, so the wrapper's share includes that transform
    confidence = MFModel(config).confidence(matrix)
    direct_times: list[float] = []
    wrapped_times: list[float] = []
    direct_cpu: list[float] = []
    wrapped_cpu: list[float] = []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            AlternatingLeastSquares(
                factors=factors, regularization=regularization, alpha=1.0, dtype=np.float32,
                iterations=iterations, num_threads=threads, random_state=seed,
            ).fit(confidence, show_progress=False)
            direct_times.append(time.perf_counter() - start)
            direct_cpu.append(time.process_time() - cpu)

            start, cpu = time.perf_counter(), time.process_time()
            MFModel(config, num_threads=threads).fit(data)
            wrapped_times.append(time.perf_counter() - start)
            wrapped_cpu.append(time.process_time() - cpu)
    direct, wrapped = statistics.median(direct_times), statistics.median(wrapped_times)
    # CPU time (all threads of this process) is less sensitive than wall time to other
    # processes sharing the machine; both ratios are reported
    cpu_ratio = statistics.median(wrapped_cpu) / statistics.median(direct_cpu)
    return {
        "benchmark": "train_als",
        "n_users": int(matrix.shape[0]), "n_items": int(matrix.shape[1]),
        "nnz": int(matrix.nnz), "factors": factors, "iterations": iterations,
        "threads": threads, "repeats": repeats,
        "implicit_seconds": [round(t, 4) for t in direct_times],
        "recsys_seconds": [round(t, 4) for t in wrapped_times],
        "implicit_median": round(direct, 4), "recsys_median": round(wrapped, 4),
        "implicit_cpu_seconds": [round(t, 4) for t in direct_cpu],
        "recsys_cpu_seconds": [round(t, 4) for t in wrapped_cpu],
        "ratio": round(wrapped / direct, 4), "cpu_ratio": round(cpu_ratio, 4), "budget": 1.15,
        "within_budget": wrapped / direct <= 1.15,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", help="imported dataset directory (default: "
                        "synthetic 50k users x 20k items x ~2M nnz)")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    matrix = dataset_matrix(args.dataset) if args.dataset else synthetic_matrix()
    result = bench_als(matrix, factors=args.factors, iterations=args.iterations,
                       repeats=args.repeats)
    result["source"] = args.dataset or "synthetic"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
