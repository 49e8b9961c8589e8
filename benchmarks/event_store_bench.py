"""Sustained insert rate of the event stores: batches of 100 events, each one transaction
acknowledged only once committed (SQLite: WAL + synchronous=FULL; PostgreSQL: synchronous_commit
on, one pooled connection per writer thread).

Every batch is one commit (an fsync of the WAL, SQLite's or the server's), as in the API, so the
figure is bounded by the disk's fsync latency. Runs the same workload from 1 thread and from a
small threadpool (how the API calls the store), on a fresh store each (a temporary SQLite file;
a PostgreSQL schema of its own, dropped afterwards), and prints JSON: events/s overall and per
quarter of the run (a falling rate would show the growing index slowing inserts), and batch
latency percentiles.

    python benchmarks/event_store_bench.py --batches 1000 --threads 1 4 --dir /var/tmp
    python benchmarks/event_store_bench.py --stores sqlite postgres --threads 1 4 8 \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/test
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

from serving.event_store import open_store

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


def run(location: str, batches: list[list[dict[str, Any]]], threads: int) -> dict[str, Any]:
    latencies: list[float] = [0.0] * len(batches)
    done_at: list[float] = [0.0] * len(batches)
    with open_store(location, pool_size=threads) as store:
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
        "db_mb": store_mb(location),
    }


def store_mb(location: str) -> float:
    if "://" not in location:
        path = Path(location)
        return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)
    import psycopg

    with psycopg.connect(location) as conn:
        row = conn.execute("SELECT pg_total_relation_size('events')").fetchone()
    return round((row[0] if row else 0) / 1e6, 1)


def postgres_runs(url: str, batches: list[list[dict[str, Any]]], threads: list[int]
                  ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Each run in a fresh schema of the database at ``url``, dropped afterwards."""
    import psycopg
    from psycopg import sql

    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        server = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                  for name in ("server_version", "synchronous_commit", "fsync",
                               "wal_sync_method")}
        for n in threads:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            try:
                sep = "&" if "?" in url else "?"
                results.append(run(f"{url}{sep}options=-csearch_path%3D{schema}", batches, n))
            finally:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return results, server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgres"],
                        default=["sqlite"])
    parser.add_argument("--dir", type=Path, default=None,
                        help="directory for the SQLite database, on the disk to measure "
                             "(default: a temporary directory)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="database for the PostgreSQL runs (a schema per run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    batches = make_batches(args.batches, args.batch_size, args.seed)
    stores: dict[str, Any] = {}
    if "sqlite" in args.stores:
        results = []
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            for threads in args.threads:
                results.append(run(str(Path(tmp) / f"bench-{threads}.db"), batches, threads))
            directory = str(Path(tmp).parent.resolve())
        stores["sqlite"] = {"journal_mode": "wal", "synchronous": "FULL",
                            "directory": directory, "version": sqlite3.sqlite_version,
                            "results": results}
    if "postgres" in args.stores:
        results, server = postgres_runs(args.postgres_url, batches, args.threads)
        stores["postgres"] = {**server, "results": results}
    print(json.dumps({
        "benchmark": "event_store_add_events",
        "batch_size": args.batch_size,
        "batches": args.batches,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "stores": stores,
    }, indent=2))


if __name__ == "__main__":
    main()
