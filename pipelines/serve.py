"""``recsys serve``: run the HTTP API under uvicorn.

One worker runs ``serving.create_app(settings)`` in this process. Several workers are separate
processes that each build their own app, so they get the settings through the environment and
the app factory ``serving.app:app_from_env``: each loads the bundles once and writes to the
same event store, and their metrics are merged through prometheus-client's multiprocess mode
(a fresh ``PROMETHEUS_MULTIPROC_DIR``, see :mod:`serving.metrics`). Parallelism comes from
workers; each runs single-threaded numerics (``recsys.threads``), so use at most one worker per
core.

Also runnable as ``python -m pipelines.serve --bundle runs/demo/bundle``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` command's arguments (for ``pipelines/cli.py``)."""
    parser.add_argument("--bundle", help="bundle directory to serve as 'default' (overrides the "
                        "config's bundles.default)")
    parser.add_argument("--registry", help="model registry directory: serve its champion and "
                        "follow the champion pointer (overrides the config's registry)")
    parser.add_argument("--config", help="serving TOML (see configs/serving.toml)")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="default: 8000")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (default 1; at most one per core)")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (off by default: it costs latency, and "
                        "/metrics counts requests)")


def check_bundle(name: str, path: Path) -> None:
    """Refuse a bundle that cannot be verified before uvicorn starts (whose start-up failure
    would be a traceback and exit 3): the directory, its manifest and every checksum. Each
    worker still loads and verifies it in full."""
    from recsys.manifest import read_manifest, verify_checksums

    if not path.is_dir():
        raise RecsysError(f"bundle '{name}': {path} is not a directory")
    try:
        verify_checksums(path, read_manifest(path))
    except RecsysError as exc:
        raise RecsysError(f"bundle '{name}': {exc}") from None
    except Exception as exc:  # a manifest of the wrong shape: still one line, exit 2
        raise RecsysError(f"bundle '{name}': {path}: malformed manifest "
                          f"({type(exc).__name__}: {exc})") from None


def check_store_and_bundles(settings: Any) -> None:
    """Open the event store once before uvicorn starts: an unreachable server, a missing
    secret or a newer schema is one line and exit 2 (in a worker it would be a traceback), and
    the migrations are applied once; then check every bundle it would serve (the champion's
    from the registry file or the store)."""
    from serving.app import open_serving_store
    from serving.champion import with_champion

    with open_serving_store(settings) as store:
        bundles = with_champion(settings, store).bundles
    for name, path in bundles.items():
        check_bundle(name, Path(path))


def metrics_dir() -> Path | None:
    """Set up prometheus-client's multiprocess mode for the workers: the directory in
    ``PROMETHEUS_MULTIPROC_DIR``, emptied of a previous run's files (they would be counted
    again), or else a new temporary one, returned so the caller removes it at exit."""
    from serving.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            if re.match(r"(counter|gauge|histogram|summary)_", old.name):
                old.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="recsys-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def serve_command(args: argparse.Namespace) -> None:
    """Validate the settings (a bad config fails here, as one line), then run uvicorn until
    stopped. Blocks."""
    import uvicorn

    from serving.settings import BUNDLE_ENV, CONFIG_ENV, REGISTRY_ENV, load_settings

    if args.workers < 1:
        raise RecsysError(f"--workers must be >= 1, got {args.workers}")
    settings = load_settings(args.config, bundle=args.bundle, registry=args.registry)
    settings.experiments_config()     # unknown bundle names in experiments fail before start
    check_store_and_bundles(settings)
    common = {"host": args.host, "port": args.port, "log_level": args.log_level,
              "access_log": args.access_log, "timeout_graceful_shutdown": 30}
    if args.workers == 1:
        from serving.app import create_app
        from serving.metrics import MULTIPROC_ENV

        if os.environ.get(MULTIPROC_ENV):   # set by the caller: empty it of a previous run
            metrics_dir()
        uvicorn.run(create_app(settings), **common)
        return
    # worker processes re-read the settings from the environment (paths made absolute, so a
    # worker does not depend on the directory it starts in)
    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    if args.bundle:
        os.environ[BUNDLE_ENV] = str(Path(args.bundle).resolve())
    if args.registry:
        os.environ[REGISTRY_ENV] = str(Path(args.registry).resolve())
    created = metrics_dir()
    try:
        uvicorn.run("serving.app:app_from_env", factory=True, workers=args.workers, **common)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys serve", description="run the HTTP API")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        serve_command(args)
    except RecsysError as exc:
        print(f"recsys serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
