"""Replicas sharing one event store apply each other's reloads: the control log.

Any number of API processes (uvicorn workers of one host, replicas on many hosts) may point at
one store. What one of them is told must reach all:

* **reloads**: ``POST /v1/admin/reload`` loads the bundle where it lands, then appends a
  ``reload`` record to the store's control log (subject: the bundle name; payload: the
  bundle's absolute path, its version, and the path the configuration names for it). Every
  process reads the records after the last one it has seen every ``control_poll_s``
  (:class:`ControlSync`) and, per bundle it serves, applies the newest one: it loads the path
  (which must be reachable from every replica: a shared registry directory or mount), checks
  that the manifest has the recorded version (a directory overwritten since is refused, not
  served), and swaps it in exactly as an admin reload does. Two reloads sent to two replicas
  at once converge on the one recorded last.
* **new replicas**: a process starting later serves the newest recorded reload of a bundle when
  the record was made against the same configured path as its own (:func:`startup_paths`); a
  process whose configuration names another path was deployed with that bundle on purpose, and
  its configuration wins (log line), until the next reload.
* **erasures** travel through the audit log instead (:mod:`serving.privacy`).
* **catalog changes** are ``catalog`` records of the same log, applied by
  :mod:`serving.live_sync` (every ``live.poll_s``; :mod:`serving.catalog`), which this class
  skips.
* **the champion pointer** of a model registry is a ``champion`` record of the same log, read
  by :mod:`serving.champion` (every ``registry_poll_s``), which this class skips too.

The control log is typed by ``kind``; a process ignores (and logs) kinds it does not know.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import RecsysError
from serving.event_store import CATALOG, CHAMPION, RELOAD, ControlRecord, EventStore
from serving.polling import Poller

if TYPE_CHECKING:
    from serving.state import LoadedBundle, ServingState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleSource:
    """Where a process loads a bundle from at start-up, and the version it must have (None:
    the configured path, whatever it holds)."""

    path: Path
    version: str | None = None
    control_id: int | None = None


def latest_reloads(records: list[ControlRecord]) -> dict[str, ControlRecord]:
    """The newest reload record per bundle name."""
    out: dict[str, ControlRecord] = {}
    for r in records:
        if r.kind == RELOAD:
            out[r.subject] = r
    return out


def startup_paths(store: EventStore, configured: dict[str, Path]
                  ) -> tuple[dict[str, BundleSource], int]:
    """Per configured bundle, what to load at start-up (see the module docstring); and the id
    of the newest control record, after which this process's :class:`ControlSync` reads."""
    records = store.control_log()
    latest = latest_reloads(records)
    sources = {}
    for name, path in configured.items():
        record = latest.get(name)
        if record is None:
            sources[name] = BundleSource(path)
        elif record.payload.get("configured") == str(Path(path).resolve()):
            sources[name] = BundleSource(Path(record.payload["path"]),
                                         record.payload.get("version"), record.id)
        else:
            log.warning("bundle %s: the control log's last reload (#%d, %s) was made against "
                        "configured path %s; this process is configured with %s and serves "
                        "that", name, record.id, record.payload.get("path"),
                        record.payload.get("configured"), Path(path).resolve())
            sources[name] = BundleSource(path)
    return sources, max((r.id for r in records), default=0)


def record_reload(state: ServingState, bundle: LoadedBundle) -> int | None:
    """Append the reload of ``bundle`` to the control log; its id, or None if the store could
    not take it (the reload then stays local to this process, and the error is logged)."""
    payload = {"path": str(bundle.path.resolve()), "version": bundle.version,
               "configured": str(Path(state.settings.bundles[bundle.name]).resolve())}
    try:
        return state.store.add_control(RELOAD, bundle.name, payload)
    except Exception:
        log.exception("reload of %s to %s could not be recorded in the control log: other "
                      "replicas will not follow it", bundle.name, bundle.version)
        return None


class ControlSync:
    """Applies control records written by other processes (one thread per process)."""

    def __init__(self, state: ServingState, last_id: int) -> None:
        self.state = state
        self.last_id = last_id
        self._poller = Poller(self.poll_once, "control-sync", "reading the control log failed")
        self._unknown_kinds: set[str] = set()

    def poll_once(self) -> list[str]:
        """Apply the records after the last one seen; returns the bundles reloaded here."""
        from serving.state import load_serving_bundle, settle_heap

        state = self.state
        records = state.store.control_log(after_id=self.last_id)
        if not records:
            return []
        for r in records:
            if r.kind not in (RELOAD, CATALOG, CHAMPION) and r.kind not in self._unknown_kinds:
                self._unknown_kinds.add(r.kind)
                log.warning("control record #%d of kind %r is not known to this version; "
                            "ignored", r.id, r.kind)
        reloaded: list[str] = []
        for name, record in latest_reloads(records).items():
            current = state.bundles.get(name)
            version = record.payload.get("version")
            if current is None or current.version == version:
                continue              # not served here, or this process made the reload
            if not state.reload_lock.acquire(blocking=False):
                return reloaded       # an admin reload runs here: retry these next round
            try:
                new = load_serving_bundle(name, record.payload["path"], state.store,
                                          state.settings.warmup_requests)
                if new.version != version:
                    raise RecsysError(f"{record.payload['path']} now holds version "
                                      f"{new.version}, not the recorded {version}")
                state.swap(new)
                settle_heap()
                state.metrics.reloads.labels(name, "synced").inc()
                reloaded.append(name)
                log.info("bundle %s: applied reload #%d from %s: %s -> %s", name, record.id,
                         record.origin, current.version, new.version)
            except Exception as exc:
                state.metrics.reloads.labels(name, "sync_failed").inc()
                log.error("bundle %s: reload #%d from %s not applied, %s keeps serving: %s",
                          name, record.id, record.origin, current.version, exc)
            finally:
                state.reload_lock.release()
        self.last_id = records[-1].id
        return reloaded

    def start(self, interval_s: float) -> None:
        self._poller.start(interval_s)

    def stop(self) -> None:
        self._poller.stop()
