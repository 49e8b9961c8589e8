"""Acceptance (issue 14): three uvicorn replicas, separate processes on separate ports, one
PostgreSQL event store. Events posted through any replica all appear in every replica's
experiment readout; a reload sent to one is served by all; an erasure sent to one holds on
all; a promotion and a rollback published to the store are served by all (their registry is a
copy whose champion.json is never updated, as on a host with its own mount); SIGKILL of one
replica while several clients post events loses no acknowledged event.

The load phase runs ``RECSYS_REPLICA_LOAD_S`` seconds (default 3); a longer run by hand prints
the same counts (docs/scaling.md quotes one).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pipelines.cli import main
from recsys.manifest import read_manifest
from recsys.registry import Registry, read_champion
from tests.serving.conftest import ADMIN_KEY, READ_KEY, WRITE_KEY
from tests.serving.test_uvicorn import ROOT, free_port, start, wait_ready

EXPERIMENT = "acceptance"
T = "2026-01-20T12:00:00Z"
POLL_S = 0.5          # control_poll_s and erasure_poll_s of the replicas
LOAD_S = float(os.environ.get("RECSYS_REPLICA_LOAD_S", "3"))


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert result, f"{what} not reached in {timeout:.0f}s: {result!r}"
    return result


def popular_user(bundle: Path) -> str:
    """A user the bundle knows (the longest history): served with fallback false."""
    import numpy as np

    from recsys.recommender import HybridRecommender

    rec = HybridRecommender.load(bundle)
    return str(rec.history.users.external_ids[int(np.argmax(np.diff(rec.history.offsets)))])


@pytest.fixture
def registry(serving_bundle: Path, second_bundle: Path, tmp_path: Path) -> Registry:
    """Both bundles registered, the first promoted (not published to any store)."""
    registry = Registry(tmp_path / "registry")
    registry.promote(registry.register(serving_bundle))
    registry.register(second_bundle)
    return registry


@pytest.fixture
def replicas(postgres_url: str, serving_bundle: Path, registry: Registry,  # noqa: ANN201
             tmp_path: Path):
    mount = tmp_path / "replica-mount" / "registry"
    shutil.copytree(registry.root, mount)
    config = tmp_path / "serving.toml"
    config.write_text(f"""
event_store = "{postgres_url}"
warmup_requests = 1
erasure_poll_s = {POLL_S}
control_poll_s = {POLL_S}
registry = "{mount}"
registry_poll_s = {POLL_S}
[bundles]
default = "{serving_bundle}"
[[experiments]]
name = "{EXPERIMENT}"
salt = "s"
[[experiments.variants]]
name = "control"
weight = 0.5
pipeline = "popularity"
[[experiments.variants]]
name = "treatment"
weight = 0.5
pipeline = "hybrid"
""")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"RECSYS_SERVING_CONFIG": str(config), "RECSYS_ADMIN_KEY": ADMIN_KEY,
                "RECSYS_READ_KEY": READ_KEY, "RECSYS_WRITE_KEY": WRITE_KEY,
                "RECSYS_AUDIT_SECRET": "acceptance-secret", "PYTHONPATH": str(ROOT)})
    procs: list[subprocess.Popen[bytes]] = []
    bases, logs = [], []
    for n in range(3):        # started together: they also race to migrate the new schema
        port = free_port()
        logs.append(tmp_path / f"replica{n}.log")
        with open(logs[-1], "wb") as log:
            procs.append(start(["-m", "uvicorn", "--factory", "serving.app:app_from_env",
                                "--host", "127.0.0.1", "--port", str(port),
                                "--no-access-log"], env, log))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, proc, log_path in zip(bases, procs, logs, strict=True):
            wait_ready(base, proc, log_path, timeout=120)
        yield bases, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # pragma: no cover - reported by the test
                proc.kill()


def test_three_replicas_share_one_postgres_store(replicas: Any, postgres_url: str,
                                                 serving_bundle: Path, second_bundle: Path,
                                                 registry: Registry) -> None:
    bases, procs = replicas
    admin, read, write = ({"X-API-Key": k} for k in (ADMIN_KEY, READ_KEY, WRITE_KEY))

    # --- events through any replica, attributed to recommendations served by another one
    posted: Counter[str] = Counter()
    for n in range(30):
        served = httpx.post(f"{bases[n % 3]}/v1/recommendations",
                            json={"user_id": f"shopper-{n}", "k": 4}, timeout=10).json()
        assert served["experiment"] == EXPERIMENT
        events = [{"event_id": f"a{n}-imp{p}", "user_id": f"shopper-{n}", "item_id": item,
                   "event_type": "impression", "timestamp": T,
                   "request_id": served["request_id"], "position": p}
                  for p, item in enumerate(i["item_id"] for i in served["items"])]
        events.append({**events[0], "event_id": f"a{n}-click", "event_type": "click"})
        r = httpx.post(f"{bases[(n + 1) % 3]}/v1/events", json={"events": events},
                       headers=write, timeout=10)
        assert r.status_code == 202, r.text
        posted.update(e["event_type"] for e in events)

    def readouts() -> list[dict[str, Any]] | None:
        out = [httpx.get(f"{b}/v1/experiments/{EXPERIMENT}/results", headers=read,
                         timeout=30).json() for b in bases]
        seen = [(sum(v["impressions"] for v in r["summary"].values()),
                 sum(v["clicks"] for v in r["summary"].values())) for r in out]
        ok = all(s == (posted["impression"], posted["click"]) for s in seen)
        return out if ok else None

    # exposures are written by each replica's background writer (within 50 ms)
    results = wait_for(readouts, 10, "every event in every replica's readout")
    summaries = [r["summary"] for r in results]
    assert summaries[0] == summaries[1] == summaries[2]
    assert sum(v["units"] for v in summaries[0].values()) == 30

    # --- a reload sent to one replica is served by all
    def versions() -> list[str]:
        return [httpx.post(f"{b}/v1/recommendations", json={"k": 1}, timeout=10)
                .json()["model_version"] for b in bases]

    old = versions()
    assert len(set(old)) == 1
    r = httpx.post(f"{bases[0]}/v1/admin/reload", headers=admin, timeout=60,
                   json={"bundle": "default", "path": str(second_bundle)})
    assert r.status_code == 200, r.text
    new = r.json()["model_version"]
    assert new != old[0] and r.json()["control_id"] is not None
    wait_for(lambda: set(versions()) == {new}, 30, f"every replica serving {new}")

    # --- an erasure sent to one replica holds on all
    user = popular_user(second_bundle)

    def fallbacks() -> list[bool]:
        return [httpx.post(f"{b}/v1/recommendations", json={"user_id": user, "k": 3},
                           timeout=10).json()["fallback"] for b in bases]

    assert fallbacks() == [False, False, False]
    httpx.post(f"{bases[2]}/v1/events", headers=write, timeout=10, json={"events": [
        {"event_id": "erase-me", "user_id": user, "item_id": "i00001", "event_type": "view",
         "timestamp": T}]})
    r = httpx.delete(f"{bases[1]}/v1/users/{user}", headers=admin, timeout=30)
    assert r.status_code == 200 and r.json()["events"] == 1, r.text
    wait_for(lambda: fallbacks() == [True, True, True], 15, f"{user} erased everywhere")

    # --- a promotion and a rollback published to the store are served by all; the replicas'
    # registry copy still names the first champion in its file
    first = read_manifest(serving_bundle).version
    assert main(["models", "promote", new, "--registry", str(registry.root),
                 "--store", postgres_url]) == 0      # the version the reload serves already
    assert main(["models", "rollback", "--registry", str(registry.root),
                 "--store", postgres_url]) == 0
    assert read_champion(registry.root).sequence == 3  # type: ignore[union-attr]
    wait_for(lambda: set(versions()) == {first}, 30, f"every replica serving {first}")

    # --- SIGKILL of one replica while clients post events: no acknowledged event is lost
    acked: set[str] = set()
    sent: set[str] = set()
    stats: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    ids = itertools.count()

    def client(c: int) -> None:
        with httpx.Client(timeout=10) as http:
            for n in itertools.count():
                if stop.is_set():
                    return
                base = bases[(c + n) % 3]
                batch = [{"event_id": f"load-{next(ids)}", "user_id": f"load-{c}",
                          "item_id": "i00001", "event_type": "view", "timestamp": T}
                         for _ in range(20)]
                with lock:
                    sent.update(e["event_id"] for e in batch)
                try:
                    r = http.post(f"{base}/v1/events", json={"events": batch}, headers=write)
                except httpx.TransportError:
                    with lock:
                        stats["failed"] += 1
                    continue
                with lock:
                    stats["requests"] += 1
                    if r.status_code == 202:
                        acked.update(e["event_id"] for e in batch)
                    else:
                        stats[f"http_{r.status_code}"] += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    time.sleep(LOAD_S / 2)
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait(10)
    time.sleep(LOAD_S / 2)
    stop.set()
    for t in threads:
        t.join(30)
    with psycopg.connect(postgres_url) as conn:
        stored = {e for (e,) in conn.execute(
            "SELECT event_id FROM events WHERE event_id LIKE 'load-%'")}
    lost = acked - stored
    print(f"\nreplicas under load for {LOAD_S:g}s, one SIGKILLed half way: "
          f"{len(acked)} events acknowledged, {len(stored)} stored, {len(lost)} acknowledged "
          f"but lost; {stats['requests']} requests answered, {stats['failed']} failed "
          f"(connection to the killed replica), other statuses "
          f"{ {k: v for k, v in stats.items() if k.startswith('http_')} }")
    assert procs[2].returncode == -signal.SIGKILL
    assert stats["failed"] > 0, "the kill did not happen under load"
    assert len(acked) > 200 and not lost
    assert stored <= sent          # nothing stored that no client sent
