"""Training benchmark (JSON): ALS through the project vs implicit directly, content-model seconds
per epoch, and ``recsys train`` wall time and peak RSS on given datasets.

Usage::

    python benchmarks/train_bench.py [--datasets /tmp/or /tmp/shop10m] [--skip-als]
        [--purchase-log 1000000] [--cache DIR]

By default it also trains on a repeat-heavy purchase log of 1M events, 25k items and 30k
shoppers (``purchase_log.py``, seed 0; made once per ``--cache`` directory): the real-shop
scale the training time is held to (at most 3 minutes on 2 cores).

Each ``recsys train`` runs in a child process; its peak RSS is the child's high-water mark,
and that of the largest worker process the fit forked (copy-on-write pages count in both).
The parts can also be run alone: ``train_bench_als.py``, ``train_bench_content.py``.
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

HERE = Path(__file__).resolve().parent


def train_run(dataset: str) -> dict[str, object]:
    """Wall time and peak RSS of ``recsys train`` on ``dataset`` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        script = ("import resource, sys; from pipelines.train import train; "
                  f"train({dataset!r}, {tmp + '/bundle'!r}, quiet=True); "
                  "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
                  "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                             text=True)
        wall = time.perf_counter() - started
        manifest = json.loads((Path(tmp) / "bundle" / "manifest.json").read_text())
    rss_kib, worker_kib = map(int, out.stdout.strip().splitlines()[-1].split())
    return {"dataset": dataset, "wall_seconds": round(wall, 1),
            "peak_rss_gib": round(rss_kib / 2**20, 2),
            # the largest forked worker (content model, ranker queries and fits); pages it
            # shares with the trainer count in both
            "peak_rss_worker_gib": round(worker_kib / 2**20, 2),
            "timings_seconds": manifest["timings_seconds"],
            "valid_metrics": {n: m["valid_metrics"] for n, m in manifest["models"].items()}}


def child_json(args: list[str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout[out.stdout.index("{"):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=[], help="dataset directories")
    parser.add_argument("--skip-als", action="store_true")
    parser.add_argument("--skip-content", action="store_true")
    parser.add_argument("--purchase-log", type=int, default=1_000_000, metavar="EVENTS",
                        help="also train on a purchase log of this many events (0: skip)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the generated purchase log here (default: a temporary dir)")
    args = parser.parse_args()
    result: dict[str, object] = {"benchmark": "train"}
    if not args.skip_als:
        result["als_vs_implicit"] = child_json([str(HERE / "train_bench_als.py")])
    if not args.skip_content:
        result["content"] = child_json([str(HERE / "train_bench_content.py")])
    datasets = list(args.datasets)
    with tempfile.TemporaryDirectory() as tmp:
        if args.purchase_log:
            log = (args.cache or Path(tmp)) / f"purchase_log_{args.purchase_log}"
            if not (log / "events.parquet").exists():
                subprocess.run([sys.executable, str(HERE / "purchase_log.py"), "--out", str(log),
                                "--events", str(args.purchase_log), "--items", "25000",
                                "--shoppers", "30000"], check=True)
            datasets.append(str(log))
        result["recsys_train"] = [train_run(d) for d in datasets]
    result["note"] = ("peak RSS via getrusage in the child; "
                      f"parent RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
