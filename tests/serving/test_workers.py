"""`recsys serve --workers 2` on one host: /metrics merges both workers (prometheus-client's
multiprocess mode, set up by the command) whichever worker answers the scrape, and a reload
sent to one worker is applied by the other through the store's control log."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import ADMIN_KEY, EXPERIMENT, READ_KEY
from tests.serving.test_uvicorn import ROOT, free_port, start, wait_ready


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape on a fresh connection (any worker may answer): sample -> value."""
    r = httpx.get(f"{base}/metrics", headers={"X-API-Key": READ_KEY}, timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def versions_by_pid(base: str, tries: int = 60) -> dict[int, str]:
    """/readyz on fresh connections until both workers have answered."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        body = httpx.get(f"{base}/readyz", timeout=5).json()
        seen[body["worker_pid"]] = body["bundles"]["default"]
        if len(seen) == 2:
            break
    return seen


def test_two_workers_share_metrics_and_reloads(serving_bundle: Path, second_bundle: Path,
                                               tmp_path: Path) -> None:
    config = tmp_path / "serving.toml"
    variants = "\n".join(f"""[[experiments.variants]]
name = "{v['name']}"
weight = {v['weight']}
pipeline = "{v['pipeline']}"
""" for v in EXPERIMENT["variants"])  # type: ignore[index, attr-defined]
    config.write_text(f"""
event_store = "{tmp_path / 'events.db'}"
warmup_requests = 1
control_poll_s = 0.3
[bundles]
default = "{serving_bundle}"
[[experiments]]
name = "{EXPERIMENT['name']}"
salt = "{EXPERIMENT['salt']}"
{variants}""")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"RECSYS_ADMIN_KEY": ADMIN_KEY, "RECSYS_READ_KEY": READ_KEY,
                "PYTHONPATH": str(ROOT)})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = start(["-m", "pipelines.serve", "--config", str(config), "--workers", "2",
                      "--port", str(port), "--log-level", "warning"], env, log)
        try:
            wait_ready(base, proc, log_path, timeout=90)
            first = versions_by_pid(base)
            assert len(first) == 2, f"only one worker answered: {first}"
            [v1] = set(first.values())

            for n in range(40):        # a fresh connection each: both workers get some
                r = httpx.post(f"{base}/v1/recommendations", json={"user_id": f"w{n}", "k": 3},
                               timeout=10)
                assert r.status_code == 200
            for _ in range(4):         # the same totals whichever worker answers
                samples = scrape(base)
                assert total(samples, "recsys_recommendations_total") == 40
                assert total(samples, "recsys_requests_total",
                             endpoint="/v1/recommendations") == 40
                assert total(samples, "recsys_model_info", version=v1) == 2   # both serve v1

            r = httpx.post(f"{base}/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY},
                           json={"bundle": "default", "path": str(second_bundle)}, timeout=60)
            assert r.status_code == 200, r.text
            v2, control_id = r.json()["model_version"], r.json()["control_id"]
            assert v2 != v1 and control_id is not None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                now = versions_by_pid(base)
                if len(now) == 2 and set(now.values()) == {v2}:
                    break
                time.sleep(0.2)
            assert len(now) == 2 and set(now.values()) == {v2}, now
            samples = scrape(base)
            assert total(samples, "recsys_model_info", version=v2) == 2
            assert total(samples, "recsys_model_info", version=v1) == 0
            assert total(samples, "recsys_reloads_total", result="ok") == 1
            assert total(samples, "recsys_reloads_total", result="synced") == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 0, log_path.read_text()
