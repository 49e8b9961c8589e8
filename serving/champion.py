"""Serving follows the model registry's champion pointer (:mod:`recsys.registry`).

With ``registry`` in the serving settings, the default bundle is the registry's champion: at
start-up (:func:`with_champion`) and whenever ``champion.json`` names another version. Every
process (uvicorn worker, replica on a shared mount) reads the pointer every
``registry_poll_s`` on its own, so no message has to reach it: a promotion or a rollback is
served by every worker within one poll interval. The new bundle is loaded and warmed up while
the old one serves, then swapped in one assignment (:meth:`ServingState.swap`), exactly as an
admin reload: no request fails.

A pointer to a version that cannot be loaded (missing, checksum) is logged and counted
(``recsys_reloads_total{result="champion_failed"}``) and the served bundle stays; it is retried
only when the pointer changes again. An admin reload (``POST /v1/admin/reload``) still works and
lasts until the next champion change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import ConfigError, RecsysError
from recsys.registry import read_champion
from serving.polling import Poller
from serving.settings import DEFAULT_BUNDLE, ServingSettings

if TYPE_CHECKING:
    from serving.state import ServingState

log = logging.getLogger(__name__)


def with_champion(settings: ServingSettings) -> ServingSettings:
    """``settings`` whose default bundle is the registry's champion (unchanged without a
    registry, or while the registry has no champion and a default bundle is configured)."""
    if settings.registry is None:
        return settings
    champion = read_champion(settings.registry)
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
    """Polls the champion pointer and swaps the default bundle when it changes."""

    def __init__(self, state: ServingState, registry: Path) -> None:
        self.state = state
        self.registry = Path(registry)
        current = state.bundles.get(DEFAULT_BUNDLE)
        self.seen: str | None = current.version if current is not None else None
        self._poller = Poller(self.poll_once, "champion-follow",
                              f"reading the champion pointer of {self.registry} failed")

    def poll_once(self) -> bool:
        """Apply a changed pointer; True when the default bundle was replaced."""
        from serving.state import load_serving_bundle, settle_heap

        champion = read_champion(self.registry)
        if champion is None or champion.version == self.seen:
            return False
        state = self.state
        if not state.reload_lock.acquire(blocking=False):
            return False          # an admin reload runs here: next round
        try:
            current = state.bundles[DEFAULT_BUNDLE]
            if current.version == champion.version:
                self.seen = champion.version
                return False
            new = load_serving_bundle(DEFAULT_BUNDLE, champion.path, state.store,
                                      state.settings.warmup_requests)
            if new.version != champion.version:
                raise RecsysError(f"{champion.path} holds version {new.version}, not "
                                  f"{champion.version}")
            state.swap(new)
            settle_heap()
            state.metrics.reloads.labels(DEFAULT_BUNDLE, "champion").inc()
            log.info("champion %s -> %s (registry %s: %s)", current.version, new.version,
                     self.registry, champion.reason)
            return True
        except Exception as exc:
            state.metrics.reloads.labels(DEFAULT_BUNDLE, "champion_failed").inc()
            log.error("registry %s: champion %s cannot be served, %s keeps serving: %s",
                      self.registry, champion.version, state.bundles[DEFAULT_BUNDLE].version,
                      exc)
            return False
        finally:
            self.seen = champion.version
            state.reload_lock.release()

    def start(self, interval_s: float) -> None:
        self._poller.start(interval_s)

    def stop(self) -> None:
        self._poller.stop()
