"""Event preparation, pandas vs Spark: wall time and peak memory per engine and dataset (JSON).

Usage::

    python benchmarks/prepare_bench.py --datasets /work/data-10m [--engines pandas spark]
        [--driver-memory 4g] [--shuffle-partitions 32] [--als]

Each (dataset, engine) runs :func:`recsys.data.prepare.prepare` over all events in a fresh child
process. Memory is measured from outside: every 0.2 s the parent sums the resident set (VmRSS
in /proc) of the child and all its descendants (for Spark: the Python driver, the JVM that runs
driver and executors in local mode, and any Python worker) and keeps the peak of that sum and
of each process kind. ``getrusage`` high-water marks (the child's own, and the largest of its
waited-for children: the JVM) are printed beside it as a cross-check; they cannot add up
processes that live at the same time, the sampling can but may miss a spike shorter than 0.2 s.
CPU: the cores the run used on average, and the load of everything else on the machine during
the run (``other_load_cores``), since the 2 cores are shared with other people's jobs.

``--als`` then fits implicit's ALS (64 factors, 3 iterations, 2 threads) on the prepared matrix
in another child, with its peak RSS: what "models train on one machine from the aggregates"
costs at that size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GIB = 2**30


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])     # utime + stime


def _busy_ticks() -> int:
    """Ticks every core spent busy since boot (all processes, from /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]    # minus idle and iowait


def _rss_and_kind(pid: int) -> tuple[int, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return 0, "gone"
    rss = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                if line.startswith("VmRSS:")), 0)
    return rss, ("java" if cmd.endswith("java") else "python" if "python" in cmd else "other")


class TreeSampler:
    """Peak summed RSS of a process tree, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every = pid, every
        self.peak_total = 0
        self.peak_by_kind: dict[str, int] = {}
        self.ticks: dict[int, int] = {}        # CPU ticks per process of the tree, last seen
        self._busy0 = _busy_ticks()
        self.busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            by_kind: dict[str, int] = {}
            for pid in _tree(self.pid):
                rss, kind = _rss_and_kind(pid)
                by_kind[kind] = by_kind.get(kind, 0) + rss
                self.ticks[pid] = max(self.ticks.get(pid, 0), _cpu_ticks(pid))
            self.peak_total = max(self.peak_total, sum(by_kind.values()))
            for kind, rss in by_kind.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), rss)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.busy = _busy_ticks() - self._busy0

    def cpu(self, wall: float) -> dict[str, float]:
        """Cores used on average by the run, and by everything else on the machine meanwhile
        (other jobs share these 2 cores; a run that had them to itself shows ~0 here)."""
        hz = os.sysconf("SC_CLK_TCK")
        own = sum(self.ticks.values()) / hz
        return {"cores_used": round(own / wall, 2),
                "other_load_cores": round(max(self.busy / hz - own, 0.0) / wall, 2)}


def run_child(args: list[str]) -> dict[str, object]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    out, err = proc.communicate()
    sampler.stop()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or ["?"])[-1], "returncode": proc.returncode,
                "wall_seconds": round(wall, 1),
                "peak_rss_gib": round(sampler.peak_total / GIB, 2)}
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall_seconds=round(wall, 1), cpu=sampler.cpu(wall),
                  peak_rss_gib=round(sampler.peak_total / GIB, 2),
                  peak_rss_gib_by_process={k: round(v / GIB, 2)
                                           for k, v in sampler.peak_by_kind.items()
                                           if k != "gone"})
    return result


def one_prepare(directory: str, engine: str, driver_memory: str, partitions: int,
                matrix_out: str | None, conf: list[str]) -> dict[str, object]:
    import scipy.sparse as sp

    from recsys.data.prepare import prepare
    from recsys.data.spark.session import SparkSettings

    settings = SparkSettings(driver_memory=driver_memory, shuffle_partitions=partitions,
                             conf=dict(kv.split("=", 1) for kv in conf))
    p = prepare(directory, engine=engine, spark=settings)  # type: ignore[arg-type]
    m = p.matrix
    if matrix_out:
        sp.save_npz(matrix_out, m, compressed=False)
    usage = resource.getrusage
    return {
        "engine": engine, "dataset": directory, "events_in": p.report.events_in,
        "events_out": p.report.events_out, "users": len(p.user_map), "items": len(p.item_map),
        "matrix_nnz": int(m.nnz),
        "matrix_csr_gib": round((m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / GIB, 3),
        "cooccurrence_nnz": int(p.cooccurrence.pairs.nnz), "seconds": p.seconds,
        "getrusage_self_gib": round(usage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "getrusage_children_gib": round(usage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
        "spark": settings.model_dump() if engine == "spark" else None,
    }


def one_als(matrix_path: str) -> dict[str, object]:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    m = sp.load_npz(matrix_path).tocsr()
    started = time.perf_counter()
    model = AlternatingLeastSquares(factors=64, iterations=3, num_threads=2,
                                    calculate_training_loss=False, random_state=0)
    model.fit(m, show_progress=False)
    return {"als": {"factors": 64, "iterations": 3, "users": m.shape[0], "items": m.shape[1],
                    "nnz": int(m.nnz), "fit_seconds": round(time.perf_counter() - started, 1),
                    "getrusage_self_gib": round(
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=[])
    parser.add_argument("--engines", nargs="+", default=["pandas", "spark"],
                        choices=["pandas", "spark"])
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--shuffle-partitions", type=int, default=32)
    parser.add_argument("--conf", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra Spark settings, e.g. spark.sql.parquet.compression.codec=none")
    parser.add_argument("--als", action="store_true", help="also fit ALS on the matrix")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--one-als", help=argparse.SUPPRESS)
    parser.add_argument("--matrix-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_prepare(args.one[0], args.one[1], args.driver_memory,
                                     args.shuffle_partitions, args.matrix_out, args.conf)))
        return
    if args.one_als:
        print(json.dumps(one_als(args.one_als)))
        return
    results = []
    for directory in args.datasets:
        for engine in args.engines:
            with tempfile.TemporaryDirectory() as tmp:
                matrix = str(Path(tmp) / "matrix.npz") if args.als else None
                extra = ["--matrix-out", matrix] if matrix else []
                result = run_child(["--one", directory, engine, "--driver-memory",
                                    args.driver_memory, "--shuffle-partitions",
                                    str(args.shuffle_partitions), *extra,
                                    *(["--conf", *args.conf] if args.conf else [])])
                if matrix and "error" not in result:
                    result["als_fit"] = run_child(["--one-als", matrix])
                    args.als = False     # the same matrix from the other engine: fit once
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "prepare", "cpus": os.cpu_count(), "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
