"""Issue 13's acceptance, end to end with real processes (run with ``-s`` for the timeline).

A synthetic shop; the champion is trained on its first half and is the registry's champion;
``recsys serve`` runs two uvicorn workers that follow the champion pointer; a client thread asks
for recommendations all the time and counts every answer that is not a 200. ``recsys simulate``
shops for a few days; then a new category is launched through the catalog API and one kind of
shopper starts buying it (events posted). The drift monitor flags the unknown-item rate and
writes the retrain trigger; ``recsys retrain --every`` (waiting since the start) sees it, trains
on the original data plus the store's events and catalog, passes the gate and promotes; both
workers reload; the new category shows in its buyers' lists; ``recsys models rollback`` brings
the first champion back on both workers. No request fails throughout.

Also a script: ``python tests/serving/test_closed_loop_e2e.py`` runs it and prints the timeline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
WRITE_KEY, READ_KEY = "e2e-write", "e2e-read"
START = datetime(2026, 1, 1, tzinfo=UTC)     # the synthetic shop's first day (its default)
SPLIT = START + timedelta(days=15)            # the champion's data ends here: the first half
SIM_DAYS = 4                                  # simulated shopping after it, before the launch
LAUNCH = SPLIT + timedelta(days=SIM_DAYS)
END = LAUNCH + timedelta(days=7)              # the last launch purchase is before this
NEW_CATEGORY, NEW_ITEMS = "smart-garden", [f"sg-{n}" for n in range(1, 9)]
BUYERS = 150                                  # shoppers who take up the new category


class Timeline:
    """Seconds since the start for each step; printed as it goes and at the end."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.rows: list[tuple[float, str]] = []

    def mark(self, what: str, at: float | None = None) -> None:
        """``what`` happened now, or at the wall-clock time ``at`` (seen in a log)."""
        self.rows.append(((time.time() if at is None else at) - self.t0, what))
        print(f"[{self.rows[-1][0]:6.1f}s] {what}", flush=True)

    def text(self) -> str:
        return "\n".join(f"{t:6.1f}s  {what}" for t, what in sorted(self.rows))


class Traffic(threading.Thread):
    """Recommendation requests without a pause, a fresh connection each (so both workers get
    them): the answers by status and the model versions served. Asked at the simulated time
    ``at`` (the shop lives in 2026-01; the wall clock would make every item months old)."""

    def __init__(self, base: str, users: list[str], at: datetime) -> None:
        super().__init__(daemon=True)
        self.base, self.users, self.at = base, users, at
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from recsys import columns as C
        from recsys.data.synthetic_truth import DEVICE_SHARE

        devices = np.random.default_rng(0).choice(list(C.DEVICES), 997, p=DEVICE_SHARE)
        n = 0
        while not self.stop.is_set():
            body = {"user_id": self.users[n % len(self.users)], "k": 10,
                    "context": {"timestamp": self.at.isoformat(),
                                "device": str(devices[n % len(devices)])}}
            n += 1
            try:
                r = httpx.post(f"{self.base}/v1/recommendations", json=body, timeout=10)
            except httpx.TransportError as exc:      # a refused connection is a failure too
                self.statuses[-1] += 1
                self.failures.append(repr(exc))
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                self.versions[r.json()["model_version"]] += 1
            elif len(self.failures) < 10:
                self.failures.append(f"{r.status_code}: {r.text[:200]}")
            time.sleep(0.01)      # two cores shared with the server, the simulator, a retrain


class Watch(threading.Thread):
    """Polls named probes a few times a second and keeps when each first held, so the timeline
    has the moments things happened, not the moments the test looked."""

    def __init__(self, probes: dict[str, Callable[[], object]]) -> None:
        super().__init__(daemon=True)
        self.probes = probes
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.seen) < len(self.probes):
            for name, probe in self.probes.items():
                if name not in self.seen:
                    try:
                        held = probe()
                    except (httpx.HTTPError, OSError, ValueError):
                        held = False
                    if held:
                        self.seen[name] = time.time()
            time.sleep(0.2)

    def wait(self, name: str, timeout: float) -> float:
        wait_for(name, lambda: name in self.seen, timeout, every=0.1)
        return self.seen[name]


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 0.3
             ) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def alerts(base: str) -> dict[str, float]:
    """The /metrics alert gauges by check (the worst over the workers)."""
    text = httpx.get(f"{base}/metrics", headers={"X-API-Key": READ_KEY}, timeout=10).text
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^recsys_alert{check="(\w+)"} (\S+)$', text, re.M)}


def shop_data(root: Path) -> tuple[Path, Path, list[str], list[str]]:
    """The shop (with its truth, for the simulator), its first half as the original dataset,
    the shoppers who will buy the new category (those most into one existing category: a
    segment the retrained model can learn) and some shoppers for the steady traffic."""
    from recsys import columns as C
    from recsys.data.io import write_dataset
    from recsys.data.synthetic import ShopConfig, generate_shop

    shop = generate_shop(ShopConfig(users=800, items=300, days=30, seed=13, start=START))
    shop.save(root / "shop")
    events, items = shop.events, shop.items
    first = events[events[C.TIMESTAMP] < pd.Timestamp(SPLIT)]
    original = write_dataset(root / "original", first, items)
    bought = first[first[C.EVENT_TYPE] != "view"].merge(items[[C.ITEM_ID, C.CATEGORY]],
                                                        on=C.ITEM_ID)
    top = bought[C.CATEGORY].astype(str).value_counts().index[1]   # a popular, not the top one
    share = (bought[C.CATEGORY].astype(str) == top).groupby(bought[C.USER_ID].astype(str)).mean()
    counts = bought[C.USER_ID].astype(str).value_counts()
    share = share[counts.reindex(share.index) >= 3].sort_values(ascending=False)
    buyers = share.index[:BUYERS].tolist()
    steady = counts.index[::7][:60].tolist()
    return root / "shop", original, buyers, steady


def new_category_events(buyers: list[str]) -> list[dict[str, object]]:
    """Each buyer comes three times in the week after the launch and buys one or two of the
    new items each time (view, cart, purchase). The retrain's gate scores the later half of
    the events newer than the champion's data, so most of these fall in its window, after the
    launch (an item counts from its launch) and after some of them taught the candidate."""
    rng = np.random.default_rng(7)
    popular = np.array([0.25, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.04])
    out: list[dict[str, object]] = []
    for b, user in enumerate(buyers):
        for visit in range(3):
            t = LAUNCH + timedelta(days=float(rng.uniform(0.1, 2.3) + 2.3 * visit))
            picks = rng.choice(len(NEW_ITEMS), int(rng.integers(1, 3)), replace=False,
                               p=popular)
            for p in picks:
                for step, kind in enumerate(("view", "add_to_cart", "purchase")):
                    out.append({"event_id": f"launch-{b}-{visit}-{p}-{kind}", "user_id": user,
                                "item_id": NEW_ITEMS[p], "event_type": kind,
                                "session_id": f"launch-{user}-{visit}",
                                "timestamp": (t + timedelta(minutes=2 * step)).isoformat()})
    return sorted(out, key=lambda e: str(e["timestamp"]))


def firing(report: dict[str, object]) -> str:
    """The firing checks of a ``recsys monitor`` report, with their values and details."""
    checks = [c for c in report["checks"] if c["firing"]]   # type: ignore[attr-defined]
    return "; ".join(f"{c['name']} {c['value']:.3g} ({c['detail']})" for c in checks) or "none"


def new_in_lists(base: str, bought: dict[str, set[str]]) -> tuple[float, float, set[str]]:
    """Shares of the buyers whose for_you list (k=10, at the end of the launch week) has an
    item of the new category, and one of it they have not bought; the versions that answered."""
    hits, unbought, versions = 0, 0, set()
    for user, theirs in bought.items():
        r = httpx.post(f"{base}/v1/recommendations", timeout=10, json={
            "user_id": user, "k": 10, "context": {"timestamp": END.isoformat()}})
        assert r.status_code == 200, r.text
        shown = {i["item_id"] for i in r.json()["items"]} & set(NEW_ITEMS)
        hits += bool(shown)
        unbought += bool(shown - theirs)
        versions.add(r.json()["model_version"])
    return hits / len(bought), unbought / len(bought), versions


def versions_by_worker(base: str, tries: int = 40) -> dict[int, str]:
    seen: dict[int, str] = {}
    for _ in range(tries):
        body = httpx.get(f"{base}/readyz", timeout=5).json()
        seen[body["worker_pid"]] = body["bundles"]["default"]
        if len(seen) >= 2:
            break
    return seen


def all_on(base: str, version: str) -> dict[int, str] | None:
    seen = versions_by_worker(base)
    return seen if len(seen) == 2 and set(seen.values()) == {version} else None


@pytest.mark.slow
def test_closed_loop_end_to_end(tmp_path: Path) -> None:
    from pipelines.train import train
    from recsys.registry import Registry
    from tests.conftest import tiny_pipeline_config
    from tests.serving.test_uvicorn import free_port, start, wait_ready

    timeline = Timeline()
    shop, original, buyers, steady = shop_data(tmp_path)
    timeline.mark(f"shop generated: 800 users, 300 items, 30 days; original data = days "
                  f"0-15 (until {SPLIT:%Y-%m-%d})")
    train(original, tmp_path / "champion", tiny_pipeline_config(), quiet=True)
    registry = Registry(tmp_path / "registry")
    v1 = registry.register(tmp_path / "champion")
    registry.promote(v1, reason="initial: trained on the first half")
    timeline.mark(f"champion {v1} trained on the first half and promoted")

    store, trigger = tmp_path / "events.db", registry.root / "retrain.trigger"
    config = tmp_path / "serving.toml"
    config.write_text(f"""
event_store = "{store}"
registry = "{registry.root}"
registry_poll_s = 0.3
warmup_requests = 1
erasure_poll_s = 0

[live]
poll_s = 0.5

[monitoring]
interval_s = 1.0
min_rows = 200
events_window = 300          # the latest events: the launch shows within a few batches
min_events = 50
max_ingest_lag_s = 1e9       # simulated time runs months behind the clock
retrain_trigger = "{trigger}"
retrain_on = ["unknown_item_rate"]
""")
    (tmp_path / "gate.toml").write_text("n_resamples = 300\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECSYS_WRITE_KEY": WRITE_KEY,
           "RECSYS_READ_KEY": READ_KEY}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log, loop_log = tmp_path / "server.log", tmp_path / "retrain.log"
    with open(server_log, "wb") as slog, open(loop_log, "w") as rlog:
        server = start(["-m", "pipelines.cli", "serve", "--config", str(config), "--port",
                        str(port), "--workers", "2", "--log-level", "warning"], env, slog)
        loop: subprocess.Popen[str] | None = None
        traffic = Traffic(base, steady + buyers[:20], at=SPLIT + timedelta(days=2))
        watch = Watch({
            "alert": lambda: alerts(base).get("unknown_item_rate") == 1,
            "trigger": trigger.exists,
            "run": lambda: "triggered" in loop_log.read_text(),
            "done": lambda: re.search(r"retrain: (promoted|refused|failed)", loop_log.read_text())})
        try:
            wait_ready(base, server, server_log)
            wait_for(f"both workers on {v1}", lambda: all_on(base, v1), 60)
            traffic.start()
            timeline.mark(f"recsys serve up: 2 workers on {v1}; client traffic starts")

            # ---- the first half: the simulator shops
            summary_path = tmp_path / "sim.json"
            sim = run_cli(["simulate", "--server", base, "--data", str(shop), "--users", "150",
                           "--days", str(SIM_DAYS), "--start", SPLIT.isoformat(), "--seed", "1",
                           "--json", str(summary_path)], env, timeout=300)
            assert sim.returncode == 0, sim.stdout + sim.stderr
            summary = json.loads(summary_path.read_text())
            assert summary["request_errors"] == 0 and summary["batch_errors"] == 0, summary
            timeline.mark(f"recsys simulate: {SIM_DAYS} days, {summary['requests']} requests, "
                          f"{summary['events_inserted']} events stored, "
                          f"{summary['purchases']} purchases, 0 errors")
            time.sleep(2.5)       # a couple of monitor rounds on the simulated traffic
            mon = run_cli(["monitor", "--server", base, "--out", str(tmp_path / "monitor0"),
                           "--key", READ_KEY, "--samples", "10"], env, timeout=60)
            report = json.loads((tmp_path / "monitor0" / "monitor.json").read_text())
            assert "unknown_item_rate" not in report["firing"], mon.stdout
            timeline.mark(f"recsys monitor before the launch: firing: {firing(report)}")
            watch.start()

            # ---- halfway: a new category through the catalog API
            changes = [{"item_id": item, "title": f"Smart planter {n}", "category": NEW_CATEGORY,
                        "brand": "Verdanta", "price": 20.0 + 5 * n,
                        "description": "self-watering planter with a soil sensor and an app",
                        "first_seen": LAUNCH.isoformat()}
                       for n, item in enumerate(NEW_ITEMS, start=1)]
            r = httpx.put(f"{base}/v1/catalog/items", json={"items": changes},
                          headers={"X-API-Key": WRITE_KEY}, timeout=30)
            assert r.status_code == 200 and sorted(r.json()["created"]) == sorted(NEW_ITEMS), r.text
            timeline.mark(f"catalog API: category {NEW_CATEGORY!r} launched, "
                          f"{len(NEW_ITEMS)} items (PUT /v1/catalog/items)")
            events = new_category_events(buyers)
            for n in range(0, len(events), 100):    # a fresh connection each: both workers
                r = httpx.post(f"{base}/v1/events", json={"events": events[n:n + 100]},
                               headers={"X-API-Key": WRITE_KEY}, timeout=30)
                assert r.status_code in (200, 202) and r.json()["rejected"] == 0, r.text
            traffic.at = END
            purchases = sum(e["event_type"] == "purchase" for e in events)
            timeline.mark(f"{len(buyers)} shoppers buy the new category: {len(events)} events "
                          f"posted ({purchases} purchases)")
            bought: dict[str, set[str]] = {}
            for e in events:
                if e["event_type"] == "purchase":
                    bought.setdefault(str(e["user_id"]), set()).add(str(e["item_id"]))
            share_before, other_before, answered = new_in_lists(base, bought)
            assert answered == {v1}, answered

            # ---- drift flagged: the alert gauge, the trigger; the retrain loop runs on it
            timeline.mark('drift flagged: recsys_alert{check="unknown_item_rate"} = 1 in '
                          '/metrics', at=watch.wait("alert", 30))
            timeline.mark("the monitor wrote the retrain trigger", at=watch.wait("trigger", 30))
            # the loop starts now, not at the start: a run triggered while the events were
            # still being posted would train on some of them (fine in a shop, not in a test)
            loop = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "retrain", "--registry",
                 str(registry.root), "--data", str(original), "--store", str(store), "--rules",
                 str(tmp_path / "gate.toml"), "--every", "6h", "--wait-first", "--check-every",
                 "0.5"], cwd=ROOT, env=env, stdout=rlog, stderr=subprocess.STDOUT, text=True)
            timeline.mark("recsys retrain --every 6h --wait-first started")
            timeline.mark("the loop found the trigger: store exported, data merged, fitting a "
                          "candidate", at=watch.wait("run", 60))
            mon = run_cli(["monitor", "--server", base, "--out", str(tmp_path / "monitor"),
                           "--key", READ_KEY, "--samples", "10"], env, timeout=60)
            report = json.loads((tmp_path / "monitor" / "monitor.json").read_text())
            assert mon.returncode == 1 and "unknown_item_rate" in report["firing"], mon.stdout
            timeline.mark(f"recsys monitor --out: exit 1; firing: {firing(report)}")

            # ---- the loop's run: candidate, gate, promotion
            done = watch.wait("done", 300)
            out = loop_log.read_text()
            champion = registry.champion()
            assert "gate: PASS" in out and champion is not None and champion.version != v1, out
            v2 = champion.version
            window = re.search(r"gate window from (\S+ \S+): ([^;(]*)", out)
            gate = re.search(r"gate: PASS \((.*)\)", out)
            assert window is not None and gate is not None, out
            timeline.mark(f"retrain: candidate {v2} passed the gate ({gate.group(1)}; window "
                          f"from {window.group(1)}: {window.group(2).strip()}) and was promoted",
                          at=done)
            workers = wait_for(f"both workers on {v2}", lambda: all_on(base, v2), 30)
            timeline.mark(f"both workers reloaded: {v2} on pids {sorted(workers)}")
            # the other worker's trigger (its own alert, about v1): answered, no second run
            wait_for("the loop to read the last trigger", lambda: not trigger.exists(), 10)

            share_after, other_after, answered = new_in_lists(base, bought)
            assert answered == {v2}, answered
            timeline.mark(f"new category in its buyers' for_you lists: {share_before:.0%} "
                          f"before the retrain, {share_after:.0%} after (an item of it they "
                          f"have not bought: {other_before:.0%} -> {other_after:.0%})")
            assert share_after >= 0.5 and share_after > share_before

            # ---- rollback
            rb = run_cli(["models", "rollback", "--registry", str(registry.root)], env, 60)
            assert rb.returncode == 0, rb.stdout + rb.stderr
            wait_for(f"both workers back on {v1}", lambda: all_on(base, v1), 30)
            timeline.mark(f"recsys models rollback: both workers serve {v1} again")
            time.sleep(0.5)
            assert loop is not None
            loop.send_signal(signal.SIGTERM)
            loop.wait(60)
            out = loop_log.read_text()
            print(out, flush=True)
            assert loop.returncode == 0 and "stopped after 1 run(s)" in out, out
            skipped = out.count("trigger skipped")
            timeline.mark(f"recsys retrain --every stopped (SIGTERM) after 1 run; {skipped} "
                          "later trigger(s) about the replaced champion skipped")
        finally:
            traffic.stop.set()
            watch.stop.set()
            if traffic.is_alive():
                traffic.join(15)
            if loop is not None and loop.poll() is None:
                loop.send_signal(signal.SIGTERM)
                loop.wait(300)
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    total = sum(traffic.statuses.values())
    timeline.mark(f"client: {total} requests, statuses {dict(traffic.statuses)}, versions "
                  f"{dict(traffic.versions)}")
    print("\nTimeline (seconds since start)\n" + timeline.text(), flush=True)
    assert set(traffic.statuses) == {200}, (traffic.failures, server_log.read_text()[-3000:])
    assert traffic.versions[v1] > 0 and traffic.versions[v2] > 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-s", "-q", "-p", "no:cacheprovider"]))
