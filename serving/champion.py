"""Serving follows the model registry's champion pointer (:mod:`recsys.registry`).

With ``registry`` in the serving settings, the default bundle is the registry's champion: at
start-up (:func:`with_champion`) and whenever the pointer names another version. The pointer
lives in two places: the registry's ``champion.json``, and, when the registry publishes to the
event store (``recsys models promote|rollback --store``, ``recsys retrain --store``:
:func:`store_publisher`), a ``champion`` record of the store's control log whose subject is
the registry's id (``registry.json``). Every process (uvicorn worker, replica on any host)
reads both every ``registry_poll_s`` on its own and serves the pointer with the highest
``sequence``, so no message has to reach it: a promotion or a rollback is served by every
worker within one poll interval. The store is what replicas on many hosts agree on (one
database, no file caching of a network mount); the file keeps single-host set-ups and
registries that do not publish working as they did. A replica loads the version the pointer
names from its own ``registry`` directory (``versions/<version>``), so each host may mount it
where it likes.

The new bundle is loaded and warmed up while the old one serves, then swapped in one
assignment (:meth:`ServingState.swap`), exactly as an admin reload: no request fails.

A pointer to a version that cannot be loaded (missing, checksum) is logged and counted
(``recsys_reloads_total{result="champion_failed"}``) and the served bundle stays; it is retried
only when the pointer changes again. An admin reload (``POST /v1/admin/reload``) still works and
lasts until the next champion change.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import ConfigError, DataError, RecsysError
from recsys.registry import (
    VERSIONS,
    Champion,
    Publish,
    Registry,
    champion_from_record,
    read_champion,
    read_registry_id,
)
from serving.event_store import CHAMPION, EventStore, StoreError, is_postgres_url, open_store
from serving.polling import Poller
from serving.settings import DEFAULT_BUNDLE, ServingSettings

if TYPE_CHECKING:
    from serving.state import ServingState

log = logging.getLogger(__name__)


def store_publisher(location: str | Path) -> Publish:
    """A :class:`recsys.registry.Registry` ``publish`` callable that appends each new pointer
    to the control log of the event store at ``location``. A SQLite file must exist already
    (a mistyped path would make a new, empty store no replica reads): DataError here, before
    the pointer changes. A store that fails to take a pointer raises StoreError saying that
    the registry's file has changed and how to publish again."""
    if not is_postgres_url(location) and not Path(location).is_file():
        raise DataError(f"event store {location} does not exist (give the API's event store: "
                        "its SQLite file or postgresql:// URL)")

    def publish(registry_id: str, champion: Champion) -> None:
        try:
            with open_store(location) as store:
                store.add_control(CHAMPION, registry_id, champion.record())
        except Exception as exc:
            raise StoreError(f"the registry's champion is now {champion.version}, but the "
                             f"event store did not take the pointer ({exc}); replicas that "
                             "read the registry's champion.json follow it, the others when it "
                             f"is published: recsys models promote {champion.version} "
                             "--registry ... --store ...") from exc

    return publish


def publishing_registry(root: str | Path, store: str | Path | None) -> Registry:
    """The registry at ``root``, publishing each new pointer to ``store`` when one is given
    (``recsys models --store``, ``recsys retrain --store``)."""
    return Registry(root, publish=None if store is None else store_publisher(store))


def published_champion(store: EventStore, registry: str | Path, after_id: int = 0
                       ) -> tuple[Champion | None, int]:
    """The highest-sequence pointer the registry at ``registry`` published to ``store`` in
    the records after ``after_id`` (None when there is none; its path in this process's view
    of the registry), and the id of the last control record read."""
    registry_id = read_registry_id(registry)
    if registry_id is None:       # never written to: nothing published (read again later)
        return None, after_id
    records = store.control_log(after_id=after_id, kind=CHAMPION)
    pointers = [champion_from_record(r.payload) for r in records if r.subject == registry_id]
    last = records[-1].id if records else after_id
    pointer = newest(*pointers)
    if pointer is not None:
        pointer = replace(pointer, path=(Path(registry) / VERSIONS / pointer.version).resolve())
    return pointer, last


def newest(*pointers: Champion | None) -> Champion | None:
    """The pointer with the highest sequence (the first of equals)."""
    out: Champion | None = None
    for p in pointers:
        if p is not None and (out is None or p.sequence > out.sequence):
            out = p
    return out


def current_champion(store: EventStore, registry: str | Path) -> Champion | None:
    """The registry's pointer now: from its file or the store, whichever is newer."""
    return newest(published_champion(store, registry)[0], read_champion(registry))


def with_champion(settings: ServingSettings, store: EventStore) -> ServingSettings:
    """``settings`` whose default bundle is the registry's champion (:func:`current_champion`;
    unchanged without a registry, or while the registry has no champion and a default bundle
    is configured)."""
    if settings.registry is None:
        return settings
    champion = current_champion(store, settings.registry)
    if champion is None:
        if DEFAULT_BUNDLE in settings.bundles:
            log.warning("registry %s has no champion yet: serving the configured %s",
                        settings.registry, settings.bundles[DEFAULT_BUNDLE])
            return settings
        raise ConfigError(f"registry {settings.registry} has no champion (recsys models "
                          "promote VERSION) and no default bundle is configured")
    return settings.model_copy(update={"bundles": {**settings.bundles,
                                                   DEFAULT_BUNDLE: champion.path}})


class ChampionFollower:
    """Polls the champion pointer (file and store) and swaps the default bundle when it
    changes."""

    def __init__(self, state: ServingState, registry: Path) -> None:
        self.state = state
        self.registry = Path(registry)
        self.published: Champion | None = None     # the newest pointer read from the store
        self.last_id = 0                           # the store's control records read so far
        # the pointer applied last, by (sequence, version): a promotion and a rollback between
        # two polls are a change even though the version is the same again
        self.seen: tuple[int, str] | None = None
        current = state.bundles.get(DEFAULT_BUNDLE)
        pointer = self.pointer()
        if pointer is not None and current is not None and current.version == pointer.version:
            self.seen = (pointer.sequence, pointer.version)
        self._poller = Poller(self.poll_once, "champion-follow",
                              f"reading the champion pointer of {self.registry} failed")

    def pointer(self) -> Champion | None:
        """The newest pointer: the store's new records, then the file."""
        found, self.last_id = published_champion(self.state.store, self.registry, self.last_id)
        self.published = newest(self.published, found)
        return newest(self.published, read_champion(self.registry))

    def poll_once(self) -> bool:
        """Apply a changed pointer; True when the default bundle was replaced."""
        from serving.state import load_serving_bundle, settle_heap

        champion = self.pointer()
        if champion is None or (champion.sequence, champion.version) == self.seen:
            return False
        state = self.state
        if not state.reload_lock.acquire(blocking=False):
            return False          # an admin reload runs here: next round
        try:
            current = state.bundles[DEFAULT_BUNDLE]
            if current.version == champion.version:
                return False
            new = load_serving_bundle(DEFAULT_BUNDLE, champion.path, state.store,
                                      state.settings.warmup_requests)
            if new.version != champion.version:
                raise RecsysError(f"{champion.path} holds version {new.version}, not "
                                  f"{champion.version}")
            state.swap(new)
            settle_heap()
            state.metrics.reloads.labels(DEFAULT_BUNDLE, "champion").inc()
            log.info("champion %s -> %s (registry %s, pointer #%d: %s)", current.version,
                     new.version, self.registry, champion.sequence, champion.reason)
            return True
        except Exception as exc:
            state.metrics.reloads.labels(DEFAULT_BUNDLE, "champion_failed").inc()
            log.error("registry %s: champion %s cannot be served, %s keeps serving: %s",
                      self.registry, champion.version, state.bundles[DEFAULT_BUNDLE].version,
                      exc)
            return False
        finally:
            self.seen = (champion.sequence, champion.version)
            state.reload_lock.release()

    def start(self, interval_s: float) -> None:
        self._poller.start(interval_s)

    def stop(self) -> None:
        self._poller.stop()
