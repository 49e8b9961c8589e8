"""Sustained insert rate of SQLiteEventStore: batches of 100 events, WAL + synchronous=FULL.

Every batch is one transaction and one fsync of the WAL, as in the API (an event is
acknowledged only once it is on disk), so the figure is bounded by the disk's fsync latency.
Runs the same workload from 1 thread and from a small threadpool (how the API calls it), on a
fresh database each, and prints JSON: events/s overall and per quarter of the run (a falling
rate would show the growing index slowing inserts), and batch latency percentiles.

    python benchmarks/event_store_bench.py --batches 1000 --threads 1 4 --dir /var/tmp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from serving.event_store import SQLiteEventStore

TYPES = ["impression"] * 10 + ["view"] * 5 + ["click"] * 3 + ["add_to_cart", "purchase"]


def make_batches(n_batches: int, batch_size: int, seed: int) -> list[list[dict[str, Any]]]:
    """Realistic rows: random UUID event ids (random B-tree positions), 10k users, 5k items."""
    rng = random.Random(seed)
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    batches = []
    for b in range(n_batches):
        batch = []
        for i in range(batch_size):
            event_type = rng.choice(TYPES)
            batch.append({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "user_id": f"user-{rng.randrange(10_000)}",
                "session_id": f"sess-{rng.randrange(50_000)}",
                "item_id": f"item-{rng.randrange(5_000)}",
                "event_type": event_type,
                "timestamp": t0 + timedelta(seconds=b * batch_size + i),
                "request_id": f"req-{rng.randrange(1_000_000)}",
                "position": rng.randrange(20),
                "price": round(rng.uniform(1, 200), 2) if event_type == "purchase" else None,
                "quantity": rng.randint(1, 3) if event_type == "purchase" else 1,
            })
        batches.append(batch)
    return batches


def run(path: Path, batches: list[list[dict[str, Any]]], threads: int) -> dict[str, Any]:
    latencies: list[float] = [0.0] * len(batches)
    done_at: list[float] = [0.0] * len(batches)
    with SQLiteEventStore(path) as store:
        def insert(k: int) -> None:
            t = time.perf_counter()
            inserted, duplicates = store.add_events(batches[k])
            done = time.perf_counter()
            latencies[k], done_at[k] = done - t, done
            if duplicates:
                raise RuntimeError(f"batch {k}: {duplicates} unexpected duplicates")

        start = time.perf_counter()
        if threads == 1:
            for k in range(len(batches)):
                insert(k)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(insert, range(len(batches))))
        elapsed = time.perf_counter() - start
        assert store.count_events() == sum(len(b) for b in batches)
    n_events = sum(len(b) for b in batches)
    size = len(batches[0])
    finish = sorted(done_at)
    quarters = []
    for q in range(4):
        lo, hi = q * len(finish) // 4, (q + 1) * len(finish) // 4
        t_lo = start if lo == 0 else finish[lo - 1]
        quarters.append(round((hi - lo) * size / (finish[hi - 1] - t_lo)))
    ms = sorted(x * 1000 for x in latencies)
    return {
        "threads": threads,
        "events": n_events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n_events / elapsed),
        "events_per_s_by_quarter": quarters,
        "batch_ms": {"p50": round(statistics.median(ms), 3),
                     "p95": round(ms[int(0.95 * (len(ms) - 1))], 3),
                     "p99": round(ms[int(0.99 * (len(ms) - 1))], 3),
                     "max": round(ms[-1], 3)},
        "db_mb": round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dir", type=Path, default=None,
                        help="directory for the database, on the disk to measure "
                             "(default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    batches = make_batches(args.batches, args.batch_size, args.seed)
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for threads in args.threads:
            path = Path(tmp) / f"bench-{threads}.db"
            results.append(run(path, batches, threads))
        directory = str(Path(tmp).parent.resolve())
    print(json.dumps({
        "benchmark": "event_store_add_events",
        "journal_mode": "wal",
        "synchronous": "FULL",
        "batch_size": args.batch_size,
        "batches": args.batches,
        "directory": directory,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
