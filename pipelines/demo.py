"""``recsys demo``: the main job on the built-in synthetic shop, end to end.

generate -> validate -> evaluate (a backtest: the production pipeline fitted on the events before
the 85% time quantile, scored on what shoppers bought after; HTML report) -> train the served
bundle on every event -> serve it with a two-variant experiment (popularity vs hybrid). With
``--simulate N``, simulated shoppers first use the running server over HTTP and the experiment
readout is printed. The server then runs until Ctrl-C (``--no-serve`` stops after the report).
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

from configs import config_path
from pipelines.prepare import print_lines, validate_dir

SERVING_CONFIG = config_path("serving.toml")


def _step(n: int, total: int, what: str) -> float:
    print(f"[{n}/{total}] {what}", flush=True)
    return time.perf_counter()


def run_demo(out: Path, *, users: int = 3000, items: int = 1500, days: int = 60,
             seed: int = 42, serve: bool = True, host: str = "127.0.0.1", port: int = 8000,
             simulate_users: int = 0) -> None:
    from recsys.data.synthetic import ShopConfig, generate_shop

    total = 5 if serve else 4
    data_dir = out / "data"
    t = _step(1, total, f"generating the synthetic shop ({users:,} users, {items:,} items, "
                        f"{days} days, seed {seed}) -> {data_dir}")
    shop = generate_shop(ShopConfig(users=users, items=items, days=days, seed=seed))
    shop.save(data_dir)
    print(f"      {len(shop.events):,} events in {time.perf_counter() - t:.1f}s")

    _step(2, total, "validating")
    dataset = validate_dir(data_dir)
    print_lines(["      " + line for line in dataset.report.lines()])

    from pipelines.evaluate import evaluate

    report_dir = out / "report"
    _step(3, total, "evaluating: a backtest of the hybrid against the simple baselines "
                    f"(fitted before the 85% time quantile, scored after) -> {report_dir}")
    report = evaluate(data_dir, report_dir=report_dir, n_resamples=500, quiet=True)
    print(f"      {report['verdict']['sentence']}")
    print(f"      report: {report_dir / 'report.html'} (also metrics.json, summary.md)")

    from pipelines.train import train

    bundle_dir = out / "bundle"
    _step(4, total, f"training the served bundle on every event -> {bundle_dir}")
    rec = train(data_dir, bundle_dir, quiet=True)
    assert rec.manifest is not None
    print(f"      bundle {rec.manifest.version} ({rec.manifest.timings_seconds['total']:.1f}s)")
    if serve:
        _step(5, total, f"serving {bundle_dir} with the experiment in {SERVING_CONFIG.name}")
        serve_demo(out, bundle_dir, data_dir, host=host, port=port,
                   simulate_users=simulate_users)


def _demo_keys() -> dict[str, str]:
    """Keys for this run (from the environment when set there, else random), exported so the
    simulation and the readout in this process send them too."""
    keys = {}
    for role in ("write", "read", "dashboard", "admin"):
        env = f"RECSYS_{role.upper()}_KEY"
        keys[role] = os.environ.get(env) or secrets.token_urlsafe(12)
        os.environ[env] = keys[role]
    return keys


def fresh_event_store(path: Path) -> None:
    """Remove the previous run's store (and its WAL, shared memory and secret), so this run's
    readout never mixes in another run's exposures."""
    for suffix in ("", "-wal", "-shm", ".secret"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def serve_demo(out: Path, bundle_dir: Path, data_dir: Path, *, host: str = "127.0.0.1",
               port: int = 8000, simulate_users: int = 0) -> None:
    """Serve ``bundle_dir`` with the demo's experiment on a fresh event store until Ctrl-C or
    SIGTERM; both stop the server cleanly, so every exposure served is written."""
    import uvicorn

    from serving.app import create_app
    from serving.settings import load_settings

    store = out / "events.db"
    fresh_event_store(store)
    keys = _demo_keys()
    settings = load_settings(SERVING_CONFIG, bundle=bundle_dir).model_copy(
        update={"event_store": store})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt    # SIGTERM stops the demo like Ctrl-C: a clean shutdown

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.1)
        if not thread.is_alive():
            print(f"      the server did not start (is port {port} in use? try --port)")
            return
        url = f"http://{host}:{port}"
        print(f"      API at {url} (OpenAPI docs: {url}/docs); a fresh event store for this "
              f"run: {store}")
        print(f"      keys for this run (X-API-Key header): write {keys['write']}, "
              f"read {keys['read']}, dashboard {keys['dashboard']}, admin {keys['admin']}")
        print(f"      dashboard: {url}/dashboard (any user name; the password is the dashboard "
              f"key)")
        print("      try:")
        print(f"        curl -s -X POST {url}/v1/recommendations -H 'content-type: "
              "application/json' \\\n          -d '{\"user_id\": \"u000001\", \"context\": "
              "{\"cart\": [\"i00001\"]}, \"k\": 5}'")
        print(f"        curl -s {url}/v1/experiments/popularity-vs-hybrid "
              f"-H 'X-API-Key: {keys['read']}'")
        if simulate_users:
            _simulate(url, data_dir, out, simulate_users)
        print("      serving until Ctrl-C", flush=True)
        while thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        # uvicorn's shutdown runs the lifespan's close: queued exposures are written
        server.should_exit = True
        thread.join(timeout=60)
        signal.signal(signal.SIGTERM, previous)


def _simulate(url: str, data_dir: Path, out: Path, users: int) -> None:
    from pipelines.cli import main

    print(f"      simulating {users:,} shoppers for 7 days against {url} ...", flush=True)
    main(["simulate", "--server", url, "--data", str(data_dir), "--users", str(users),
          "--days", "7", "--seed", "1"])
    main(["experiment", "report", "popularity-vs-hybrid", "--config", str(SERVING_CONFIG),
          "--store", str(out / "events.db"), "--server", url,
          "--out", str(out / "experiment_report")])
