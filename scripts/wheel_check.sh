#!/usr/bin/env bash
# The install a user gets beyond this checkout: build the wheel, install it (not editable) into
# a fresh venv, and from an empty directory run `recsys demo --no-serve` on a small shop, then
# serve its bundle and drive it with `recsys simulate`. Run by .ci/run after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d)
# the server is stopped, and waited for, before its store is deleted under it
trap 'if [ -n "${SERVER:-}" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
"$WORK/venv/bin/python" -m pip install -q "torch==2.13.0"
"$WORK/venv/bin/python" -m pip install -q "$WORK"/dist/recsys-*.whl
mkdir "$WORK/user" && cd "$WORK/user"        # no checkout here: configs come from the wheel
"$WORK/venv/bin/recsys" demo --no-serve --out shop --users 200 --items 120 --days 20
export RECSYS_WRITE_KEY=wheel-write RECSYS_READ_KEY=wheel-read RECSYS_DASHBOARD_KEY=wheel-dash
PORT=$("$WORK/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$WORK/venv/bin/python" -c 'from configs import config_path; print(config_path("serving.toml"))' \
    | grep -q site-packages
"$WORK/venv/bin/recsys" serve --bundle shop/bundle --port "$PORT" --log-level warning &
SERVER=$!
"$WORK/venv/bin/recsys" simulate --server "http://127.0.0.1:$PORT" --data shop/data \
    --users 40 --days 2 --json sim.json
"$WORK/venv/bin/python" -c 'import json,sys; s=json.load(open("sim.json")); sys.exit(0 if s["requests"] > 0 and s["request_errors"] == 0 and s["events_inserted"] > 0 else 1)'
# the dashboard's page and scripts are package data: served from the installed wheel
"$WORK/venv/bin/python" - "$PORT" <<'PY'
import sys, httpx
base, key = f"http://127.0.0.1:{sys.argv[1]}", {"X-API-Key": "wheel-dash"}
for path in ("/dashboard", "/dashboard/assets/app.js", "/dashboard/assets/dashboard.css"):
    assert httpx.get(base + path, headers=key).status_code == 200, path
health = httpx.get(base + "/v1/dashboard/health", headers=key).json()
assert health["live"]["arms"][0]["lists"] > 0, health["live"]
PY
echo "wheel check: passed"
