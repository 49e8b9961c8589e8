"""What a running app holds: the loaded bundles and everything the routes share.

One :class:`ServingState` per app instance, built by the lifespan (``serving.app``) and reached
by routes through ``deps.StateDep``. Bundles are replaced, never edited in place (apart from the
copy-on-write erasures of :mod:`serving.privacy`): a reload loads the new recommender fully,
then swaps the dict entry in one assignment; a request that already looked up the old bundle keeps
using it to the end.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.manifest import Manifest
from recsys.recommender import HybridRecommender, Request
from serving.catalog import apply_catalog
from serving.event_store import EventStore
from serving.experiments import ExperimentsConfig
from serving.exposures import ExposureWriter
from serving.guardrails import GuardrailMonitor
from serving.live import LiveState
from serving.metrics import Metrics
from serving.polling import Poller
from serving.privacy import Erased, ErasureTracker
from serving.settings import DEFAULT_BUNDLE, ROLES, ServingSettings

if TYPE_CHECKING:
    from serving.champion import ChampionFollower
    from serving.live_sync import LiveSync
    from serving.monitoring import Monitor
    from serving.replicas import ControlSync

log = logging.getLogger(__name__)


@dataclass
class LoadedBundle:
    """A bundle ready to serve: its HybridRecommender, manifest and erasure bookkeeping."""

    name: str
    path: Path
    recommender: HybridRecommender
    manifest: Manifest
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    erasures: ErasureTracker = field(default_factory=ErasureTracker)
    catalog_id: int = 0      # the last catalog control record applied (serving.catalog)

    @property
    def version(self) -> str:
        return self.manifest.version


def warm_up(rec: HybridRecommender, n: int) -> None:
    """Run a few requests (known users, an anonymous one, a baseline) so that lazy
    initialisation (LightGBM, FAISS, numpy paths) is paid before real traffic."""
    if n <= 0:
        return
    for user in [*rec.sample_users(n), None]:
        rec.recommend(Request(user_id=user, k=10))
    rec.variant("popularity").recommend(Request(k=10))
    if len(rec.items):
        rec.similar_items(str(rec.items.external_ids[0]), k=10)


def settle_heap() -> None:
    """Move everything alive now (the loaded bundles, the libraries) out of the cyclic
    garbage collector's reach.

    A loaded 100k-item bundle leaves ~240k tracked objects; one full collection over them took
    158 ms here, and Python runs one whenever enough objects have survived since the last:
    a request that triggers it waits for all of it (a p99 spike). ``gc.freeze()`` makes those
    collections skip the start-up objects, which live as long as the process anyway. Called
    again after each reload, which unfreezes and collects once (whatever the replaced bundle
    left in reference cycles goes then): that collection holds the GIL, so requests in flight
    during a reload wait for it once (~0.2 s), and none fails.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def load_serving_bundle(name: str, path: str | Path, store: EventStore, warmup: int = 5
                        ) -> LoadedBundle:
    """Load, apply every erasure and catalog change recorded so far, warm up. Raises
    BundleError when broken."""
    started = time.perf_counter()
    rec = HybridRecommender.load(path)
    assert rec.manifest is not None
    bundle = LoadedBundle(name, Path(path), rec, rec.manifest)
    bundle.erasures.apply(rec, store)
    apply_catalog(bundle, store)
    warm_up(bundle.recommender, warmup)
    log.info("bundle %s %s loaded from %s in %.2fs", name, bundle.version, path,
             time.perf_counter() - started)
    return bundle


class ServingState:
    """Shared by every request of one app instance."""

    def __init__(self, *, settings: ServingSettings, bundles: dict[str, LoadedBundle],
                 experiments: ExperimentsConfig, store: EventStore, exposures: ExposureWriter,
                 metrics: Metrics, guardrails: GuardrailMonitor, keys: dict[str, str]) -> None:
        self.settings = settings
        self.bundles = bundles
        self.experiments = experiments
        self.store = store
        self.exposures = exposures
        self.metrics = metrics
        self.guardrails = guardrails
        self.keys = keys        # role -> API key (serving.auth)
        self.key_env_names = {r: getattr(settings.keys, f"{r}_env") for r in ROLES}
        self.ready = False
        self.reload_lock = threading.Lock()     # one reload at a time
        # store erasure + in-memory erasure + bundle swap: never interleaved, so a bundle
        # swapped in during an erasure still gets it
        self._erasure_lock = threading.Lock()
        self._erasure_poll = Poller(self.sync_erasures, "erasure-poll",
                                    "applying erasures from the audit log failed")
        self.control: ControlSync | None = None   # set by serving.app (serving.replicas)
        self.champion: ChampionFollower | None = None   # serving.app, with a registry
        self.monitor: Monitor | None = None    # serving.app, unless monitoring is off
        live = settings.live
        # the events stored since the bundles were trained, per shopper (serving.live)
        self.live = LiveState(max_shoppers=live.max_shoppers, max_sessions=live.max_sessions,
                              max_events=live.max_events)
        self.live_sync: LiveSync | None = None     # set by serving.app (serving.live_sync)
        for b in bundles.values():
            metrics.set_model(b.name, b.version)

    def swap(self, new: LoadedBundle) -> LoadedBundle:
        """Replace the bundle called ``new.name``; returns the old one."""
        with self._erasure_lock:
            new.erasures.apply(new.recommender, self.store)   # erasures made while loading
            apply_catalog(new, self.store)                    # catalog changes, likewise
            old = self.bundles[new.name]
            self.bundles[new.name] = new      # one assignment: atomic for readers
        self.metrics.set_model(new.name, new.version, previous=old.version)
        if self.monitor is not None and new.name == DEFAULT_BUNDLE:
            self.monitor.set_bundle(new)
        return old

    def erase_user(self, user_id: str) -> tuple[dict[str, int], dict[str, Erased]]:
        """Erase the user from the store (audited), from every loaded bundle and from the live
        state."""
        with self._erasure_lock:
            # queued exposures of this user must land before the delete, not after it
            self.exposures.flush()
            counts = self.store.delete_user(user_id)
            if self.live_sync is not None:
                self.live_sync.forget(user_id)   # after a poll that read them, if one runs
            else:
                self.live.forget_user(user_id)
            erased = {}
            for name, bundle in self.bundles.items():
                done = bundle.erasures.apply(bundle.recommender, self.store)
                if user_id in done:
                    erased[name] = done[user_id]
        return counts, erased

    def sync_erasures(self) -> None:
        """Apply erasures other processes (uvicorn workers) recorded in the store."""
        with self._erasure_lock:
            for bundle in list(self.bundles.values()):
                bundle.erasures.apply(bundle.recommender, self.store)

    def sync_catalog(self) -> int:
        """Apply catalog changes recorded (by this or another process) to every bundle;
        returns the records applied."""
        with self._erasure_lock:
            return sum(apply_catalog(b, self.store) for b in list(self.bundles.values()))

    def start_erasure_poll(self, interval_s: float) -> None:
        self._erasure_poll.start(interval_s)

    def close(self) -> None:
        """Stop the poller, write queued exposures, close the store."""
        self.ready = False
        if self.control is not None:
            self.control.stop()
        if self.champion is not None:
            self.champion.stop()
        if self.monitor is not None:
            self.monitor.stop()
        if self.live_sync is not None:
            self.live_sync.stop()
        self._erasure_poll.stop(5.0)
        self.exposures.close()
        self.store.close()
