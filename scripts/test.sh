#!/usr/bin/env bash
# Install the project with its test extras into .venv and run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium renders the HTML reports in the tests (Debian's package; skipped if absent).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
        >/dev/null) || echo "chromium could not be installed: report rendering tests will skip"
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the CPU wheel is on local disk; an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# [spark]: PySpark for the Spark preparation engine's tests (Java 17 is on the machine).
.venv/bin/python -m pip install -q -e '.[test,spark]'
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest -q "$@"
