"""``recsys monitor --server URL --out DIR``: drift and health of a running API's live traffic
against the served bundle's training snapshot (``GET /v1/monitoring``, read key), written as
``monitor.json`` and ``monitor.html`` (plots). Exit code 1 when an alert fires; with
``--trigger FILE`` that also writes the retrain trigger (``recsys retrain --every`` runs at
once).

Each uvicorn worker keeps its own window: ``--samples N`` asks N times on fresh connections
and keeps, per worker, the latest answer; the worst one (most alerts, then most rows) is
reported and every worker's is in ``monitor.json`` under ``workers``.

Example::

    RECSYS_READ_KEY=... recsys monitor --server http://127.0.0.1:8000 --out runs/monitor
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx

from evaluation.monitor_html import render_monitor
from recsys.errors import DataError

KEY_ENV = "RECSYS_READ_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="base URL of the running API")
    parser.add_argument("--out", required=True, help="directory for monitor.json/monitor.html")
    parser.add_argument("--key", help=f"read (or admin) key (default: ${KEY_ENV})")
    parser.add_argument("--samples", type=int, default=4,
                        help="requests made, to reach every worker (default 4)")
    parser.add_argument("--trigger", help="on an alert, write this retrain trigger file")


def fetch(client: httpx.Client, key: str | None, samples: int = 1) -> dict[str, Any]:
    """The worst worker's report, with every worker's under ``workers``."""
    workers: dict[int, dict[str, Any]] = {}
    headers = {"X-API-Key": key} if key else {}
    for _ in range(max(1, samples)):
        r = client.get("/v1/monitoring", headers=headers)
        if r.status_code != 200:
            raise DataError(f"GET /v1/monitoring: {r.status_code} {r.text[:200]}")
        body = r.json()
        workers[int(body["worker_pid"])] = body
    worst = max(workers.values(), key=lambda b: (len(b["firing"]), b["rows"]))
    return {**worst, "workers": list(workers.values())}


def write_report(body: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "monitor.json", out / "monitor.html"
    json_path.write_text(json.dumps(body, indent=2) + "\n")
    html_path.write_text(render_monitor(body))
    return json_path, html_path


def monitor_command(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get(KEY_ENV) or os.environ.get("RECSYS_ADMIN_KEY")
    try:
        with httpx.Client(base_url=args.server, timeout=30.0,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            body = fetch(client, key, args.samples)
    except httpx.HTTPError as exc:
        raise DataError(f"{args.server}: {exc}") from None
    json_path, html_path = write_report(body, args.out)
    for c in body["checks"]:
        state = "FIRING" if c["firing"] else "ok"
        print(f"{state:<7}{c['name']}: {c['value']} (threshold {c['threshold']}; "
              f"{c['detail']})")
    print(f"wrote {json_path} and {html_path}")
    if body["firing"] and args.trigger:
        Path(args.trigger).write_text(f"{body['at']} recsys monitor: "
                                      f"{', '.join(body['firing'])}\n")
        print(f"retrain triggered -> {args.trigger}")
    return 1 if body["firing"] else 0
