"""Serving follows the registry's champion pointer: two real uvicorn workers switch to a
promoted version, and back on a rollback, while clients hammer them; no request fails."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.cli import main
from recsys.manifest import read_manifest
from recsys.registry import Registry, read_champion, read_registry_id
from serving.settings import ServingSettings
from tests.serving.conftest import ADMIN_KEY, READ_KEY
from tests.serving.test_uvicorn import free_port, start, wait_ready


def versions_by_worker(base: str, tries: int = 40) -> dict[int, str]:
    """Ask /readyz on fresh connections until both workers answered (or ``tries`` ran out)."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        body = httpx.get(f"{base}/readyz", timeout=5).json()
        seen[body["worker_pid"]] = body["bundles"]["default"]
        if len(seen) >= 2:
            break
    return seen


def wait_all_on(base: str, version: str, timeout: float = 60.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    seen: dict[int, str] = {}
    while time.monotonic() < deadline:
        seen = versions_by_worker(base)
        if len(seen) == 2 and set(seen.values()) == {version}:
            return seen
        time.sleep(0.2)
    pytest.fail(f"workers did not all serve {version} in {timeout}s: {seen}")


def test_settings_need_a_default_bundle_or_a_registry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="or give a registry"):
        ServingSettings.model_validate({"bundles": {}})
    assert ServingSettings.model_validate({"registry": str(tmp_path)}).registry == tmp_path


@pytest.mark.slow
def test_workers_follow_promote_and_rollback_without_a_failed_request(
        serving_bundle: Path, second_bundle: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    v1 = registry.register(serving_bundle)
    v2 = registry.register(second_bundle)
    assert v1 != v2 and read_manifest(second_bundle).version == v2
    registry.promote(v1, reason="initial")
    config = tmp_path / "serving.toml"
    config.write_text(f"""
event_store = "{tmp_path / 'events.db'}"
registry = "{registry.root}"
registry_poll_s = 0.2
warmup_requests = 1
erasure_poll_s = 0
""")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "RECSYS_READ_KEY": READ_KEY}
    with open(log_path, "wb") as log:
        proc = start(["-m", "pipelines.cli", "serve", "--config", str(config), "--port",
                      str(port), "--workers", "2", "--log-level", "warning"], env, log)
        try:
            wait_ready(base, proc, log_path)
            wait_all_on(base, v1)
            statuses: Counter[int] = Counter()
            served: Counter[str] = Counter()
            stop = threading.Event()

            def hammer(seed: int) -> None:
                n = seed
                while not stop.is_set():
                    try:   # a fresh connection each time: both workers get traffic
                        r = httpx.post(f"{base}/v1/recommendations", timeout=10,
                                       json={"user_id": f"u{n % 50}", "k": 5})
                    except httpx.TransportError as exc:   # a refused connection is a failure
                        statuses[-1] += 1
                        print(exc)
                        continue
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        served[r.json()["model_version"]] += 1
                    n += 2

            threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            registry.promote(v2, reason="test promotion")
            wait_all_on(base, v2)
            time.sleep(0.5)
            registry.rollback()
            wait_all_on(base, v1)
            time.sleep(0.3)
            stop.set()
            for t in threads:
                t.join()
            assert set(statuses) == {200}, (statuses, log_path.read_text()[-3000:])
            assert served[v1] > 0 and served[v2] > 0
            # recsys monitor against the same workers: both reached, the champion's samples
            out = tmp_path / "monitor"
            code = main(["monitor", "--server", base, "--out", str(out), "--key", READ_KEY,
                         "--samples", "20"])
            report = json.loads((out / "monitor.json").read_text())
            assert code == (1 if report["firing"] else 0)
            assert {w["bundle_version"] for w in report["workers"]} == {v1}
            assert len(report["workers"]) == 2 and (out / "monitor.html").is_file()
            # the monitor's gauges, merged over the two workers (multiprocess mode)
            metrics = httpx.get(f"{base}/metrics", headers={"X-API-Key": READ_KEY}).text
            assert 'recsys_alert{check="feature_psi"}' in metrics
            assert 'recsys_monitor_value{check="top_share"}' in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_in_process_follower_and_dashboard(make_settings: Any, serving_bundle: Path,
                                           second_bundle: Path, tmp_path: Path) -> None:
    """With a registry and no bundle path: the champion is served; a promotion is applied by
    the next poll; a pointer to a broken version is refused and the champion keeps serving."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests.serving.conftest import DASHBOARD_KEY

    registry = Registry(tmp_path / "registry")
    v1, v2 = registry.register(serving_bundle), registry.register(second_bundle)
    settings = make_settings(bundles={}, registry=str(registry.root), experiments=[])
    with pytest.raises(Exception, match="no champion"):
        with TestClient(create_app(settings)):
            pass
    registry.promote(v1)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.serving    # type: ignore[attr-defined]
        follower = state.champion
        assert state.bundles["default"].version == v1 and not follower.poll_once()
        registry.promote(v2)
        assert follower.poll_once() and state.bundles["default"].version == v2
        r = client.post("/v1/recommendations", json={"k": 3})
        assert r.json()["model_version"] == v2
        health = client.get("/v1/dashboard/health", headers={"X-API-Key": DASHBOARD_KEY}).json()
        assert health["registry"]["available"] and f"champion {v2}" in health["registry"]["note"]
        assert f"rollback goes to {v1}" in health["registry"]["note"]
        # a damaged version: refused, the champion keeps serving
        damaged = sorted((registry.path_of(v1) / "catalog").iterdir())[0]
        damaged.write_bytes(b"damaged")
        registry.promote(v1, reason="back to a damaged v1")
        assert not follower.poll_once()
        assert state.bundles["default"].version == v2
        assert client.post("/v1/recommendations", json={"k": 3}).status_code == 200


def test_champion_published_to_the_store_beats_a_stale_registry_file(
        make_settings: Any, serving_bundle: Path, second_bundle: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Another host's view of the registry (a copy at another path, its champion.json left
    behind) follows the pointer published to the event store, loads the version from its own
    view, and a replica starting later serves the store's pointer too."""
    import shutil

    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.event_store import CHAMPION, open_store
    from tests.serving.conftest import DASHBOARD_KEY

    registry = Registry(tmp_path / "registry")
    v1, v2 = registry.register(serving_bundle), registry.register(second_bundle)
    registry.promote(v1)
    mount = tmp_path / "host-b" / "registry"          # this host's copy, never updated again
    shutil.copytree(registry.root, mount)
    store = str(tmp_path / "events.db")
    settings = make_settings(bundles={}, registry=str(mount), experiments=[],
                             event_store=store)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.serving    # type: ignore[attr-defined]
        assert state.bundles["default"].version == v1 and not state.champion.poll_once()
        assert main(["models", "promote", v2, "--registry", str(registry.root),
                     "--store", store]) == 0
        assert read_champion(mount).version == v1      # type: ignore[union-attr]
        assert state.champion.poll_once()
        assert state.bundles["default"].version == v2
        assert state.bundles["default"].path == (mount / "versions" / v2).resolve()
        assert client.post("/v1/recommendations", json={"k": 3}).json()["model_version"] == v2
        health = client.get("/v1/dashboard/health", headers={"X-API-Key": DASHBOARD_KEY}).json()
        assert f"champion {v2}" in health["registry"]["note"]     # the store's, not the file's
        with TestClient(create_app(settings)) as later:          # a replica starting now
            assert later.app.state.serving.bundles["default"].version == v2  # type: ignore
        with caplog.at_level("WARNING"):
            state.control.poll_once()         # the control sync skips champion records quietly
        assert "not known" not in caplog.text
        assert main(["models", "rollback", "--registry", str(registry.root),
                     "--store", store]) == 0
        assert state.champion.poll_once() and state.bundles["default"].version == v1
        # an admin reload serves v2; a promotion of v2 and a rollback to v1 before the next
        # poll are still a champion change (v1 again, by sequence)
        r = client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY},
                        json={"bundle": "default", "path": str(second_bundle)})
        assert r.status_code == 200 and state.bundles["default"].version == v2
        registry_cli = ["--registry", str(registry.root), "--store", store]
        assert main(["models", "promote", v2, *registry_cli]) == 0
        assert main(["models", "rollback", *registry_cli]) == 0
        assert state.champion.poll_once() and state.bundles["default"].version == v1
    with open_store(store) as s:
        records = s.control_log(kind=CHAMPION)
    assert [(r.payload["version"], r.payload["sequence"]) for r in records] == [
        (v2, 2), (v1, 3), (v2, 4), (v1, 5)]
    assert {r.subject for r in records} == {read_registry_id(registry.root)}
