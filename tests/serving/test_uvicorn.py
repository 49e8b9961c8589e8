"""End to end against real uvicorn processes: a reload under live traffic fails no request, and
an acknowledged event batch survives SIGKILL of the server and a restart (which serves the
reloaded bundle, recorded in the store's control log)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.serving.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
T = "2026-01-20T12:00:00Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
               ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready in {timeout}s:\n{log.read_text()}")


def test_reload_under_load_and_durable_events(serving_bundle: Path, second_bundle: Path,
                                              tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    config = tmp_path / "serving.toml"
    config.write_text(f"""
event_store = "{db}"
warmup_requests = 1
erasure_poll_s = 0
[bundles]
default = "{serving_bundle}"
[[experiments]]
name = "e2e"
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
    env = {**os.environ, "RECSYS_SERVING_CONFIG": str(config), "RECSYS_ADMIN_KEY": ADMIN_KEY,
           "PYTHONPATH": str(ROOT)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = start(["-m", "uvicorn", "--factory", "serving.app:app_from_env",
                      "--host", "127.0.0.1", "--port", str(port), "--no-access-log"], env, log)
        try:
            wait_ready(base, proc, log_path)

            # --- reload while a client hammers the recommendations endpoint
            statuses: Counter[int] = Counter()
            versions: list[str] = []
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(base_url=base, timeout=10.0) as c:
                    n = 0
                    while not stop.is_set():
                        r = c.post("/v1/recommendations",
                                   json={"user_id": f"u{n % 50}", "k": 5,
                                         "context": {"cart": ["i00001"]}})
                        statuses[r.status_code] += 1
                        if r.status_code == 200:
                            versions.append(r.json()["model_version"])
                        n += 1

            threads = [threading.Thread(target=hammer) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            r = httpx.post(f"{base}/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY},
                           json={"bundle": "default", "path": str(second_bundle)}, timeout=60)
            assert r.status_code == 200, r.text
            new_version = r.json()["model_version"]
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join()
            assert set(statuses) == {200}, statuses
            assert versions[0] == r.json()["previous_version"] and versions[-1] == new_version

            # --- an acknowledged batch is on disk when the server dies
            batch = [{"event_id": f"k{n}", "user_id": f"u{n % 7}", "item_id": "i00001",
                      "event_type": "view", "timestamp": T} for n in range(250)]
            r = httpx.post(f"{base}/v1/events", json={"events": batch}, timeout=10,
                           headers={"X-API-Key": ADMIN_KEY})
            assert r.status_code == 202 and r.json()["inserted"] == 250
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL

        # --- restart through `recsys serve` (pipelines.serve); the events are there
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start(["-m", "pipelines.serve", "--config", str(config), "--port", str(port),
                      "--log-level", "warning"], env, log)
        try:
            wait_ready(base, proc, log_path)
            with sqlite3.connect(db) as conn:
                assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 250
            r = httpx.post(f"{base}/v1/events", json={"events": batch}, timeout=10,
                           headers={"X-API-Key": ADMIN_KEY})
            assert r.json()["duplicates"] == 250      # retrying after the crash is safe
            # the restart serves the reloaded bundle: the reload is in the store's control
            # log, so a process started later joins the fleet on it (serving.replicas)
            ready = httpx.get(f"{base}/readyz").json()
            assert ready["bundles"]["default"] == new_version
            assert ready["worker_pid"] == proc.pid      # one worker: `recsys serve` itself
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        # a graceful stop: uvicorn re-raises the signal after the lifespan shut down cleanly
        assert proc.returncode in (0, -signal.SIGTERM), log_path.read_text()
