"""The app factory: ``create_app(settings)`` returns a FastAPI app whose lifespan loads every
bundle once, opens the event store and starts the exposure writer.

>>> # app = create_app(ServingSettings(bundles={"default": "runs/demo/bundle"}))
>>> # uvicorn.run(app)    or, for several workers:
>>> # RECSYS_SERVING_CONFIG=configs/serving.toml uvicorn --factory serving.app:app_from_env

OpenAPI docs at ``/docs``; the endpoints are listed in ``docs/api.md``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from recsys.errors import ConfigError, RecsysError
from recsys.threads import set_thread_policy
from serving import errors
from serving.auth import KEY_HEADER
from serving.body_limit import BodySizeLimit
from serving.champion import ChampionFollower, with_champion
from serving.cors import CORSMiddleware
from serving.event_store import EventStore, is_postgres_url, open_store
from serving.exposures import ExposureWriter
from serving.guardrails import GuardrailMonitor
from serving.health import ServedWindow
from serving.live_sync import LiveSync
from serving.metrics import Metrics, MetricsMiddleware
from serving.monitoring import Monitor
from serving.openapi import install_openapi
from serving.query_params import SingleQueryValues
from serving.replicas import BundleSource, ControlSync, startup_paths
from serving.routes import (
    admin,
    catalog,
    dashboard,
    dashboard_page,
    events,
    experiments,
    health,
    monitoring,
    recommendations,
)
from serving.settings import DEFAULT_BUNDLE, ServingSettings, settings_from_env
from serving.state import LoadedBundle, ServingState, load_serving_bundle, settle_heap

log = logging.getLogger(__name__)


def open_serving_store(settings: ServingSettings) -> EventStore:
    """The configured store; ConfigError when a PostgreSQL store has no audit secret (every
    replica must hash erased ids with the same one, and there is no file to keep it in)."""
    secret = settings.privacy.resolve_secret()
    if is_postgres_url(settings.event_store) and secret is None:
        raise ConfigError(f"event_store is PostgreSQL: set {settings.privacy.audit_secret_env} "
                          "(the erasure audit secret, the same on every replica)")
    return open_store(settings.event_store, audit_secret=secret,
                      pool_size=settings.event_store_pool)


def load_startup_bundle(name: str, source: BundleSource, configured: Path, store: EventStore,
                        warmup: int) -> LoadedBundle:
    """The bundle the control log says the fleet serves, else (or if that fails) the
    configured one (serving.replicas)."""
    if source.version is not None:
        try:
            bundle = load_serving_bundle(name, source.path, store, warmup)
            if bundle.version == source.version:
                log.info("bundle %s: serving %s from reload #%s in the control log", name,
                         bundle.version, source.control_id)
                return bundle
            log.error("bundle %s: %s holds %s, not %s as reload #%s recorded; serving the "
                      "configured %s", name, source.path, bundle.version, source.version,
                      source.control_id, configured)
        except RecsysError as exc:
            log.error("bundle %s: reload #%s (%s) cannot be loaded (%s); serving the "
                      "configured %s", name, source.control_id, source.path, exc, configured)
    return load_serving_bundle(name, configured, store, warmup)


def build_state(settings: ServingSettings, metrics: Metrics, guardrails: GuardrailMonitor,
                keys: dict[str, str]) -> ServingState:
    """Open the store, load and warm every bundle, start the exposure writer."""
    experiments_config = settings.experiments_config()   # ConfigError before any loading
    store = open_serving_store(settings)
    try:
        settings = with_champion(settings, store)
        sources, last_control = startup_paths(store, dict(settings.bundles))
        bundles: dict[str, LoadedBundle] = {
            name: load_startup_bundle(name, sources[name], path, store,
                                      settings.warmup_requests)
            for name, path in settings.bundles.items()}
    except BaseException:
        store.close()
        raise
    ex = settings.exposures
    writer = ExposureWriter(store, max_queue=ex.max_queue, max_batch=ex.max_batch,
                            flush_interval_s=ex.flush_interval_ms / 1000.0,
                            synchronous=ex.mode == "synchronous",
                            on_result=lambda result, n: metrics.exposures.labels(result).inc(n))
    writer.start()
    metrics.watch_queue(lambda: writer.pending)
    state = ServingState(settings=settings, bundles=bundles, experiments=experiments_config,
                         store=store, exposures=writer, metrics=metrics, guardrails=guardrails,
                         keys=keys)
    state.control = ControlSync(state, last_control)
    state.live_sync = LiveSync(state)
    try:
        if settings.registry is not None:   # reads the pointer: the store may fail here
            state.champion = ChampionFollower(state, settings.registry)
        state.live_sync.rebuild()
    except BaseException:
        state.close()
        raise
    return state


def create_app(settings: ServingSettings) -> FastAPI:
    """A new app for ``settings``; nothing is loaded until the lifespan starts."""
    metrics = Metrics()
    guardrails = GuardrailMonitor(settings.guardrails)
    metrics.watch_guardrails(guardrails)
    h = settings.health
    served = ServedWindow(h.window, rate_window_s=h.rate_window_s, top_fraction=h.top_fraction)
    keys = settings.keys.resolve()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        set_thread_policy("serve")
        # blocking on purpose: uvicorn accepts connections only after start-up, so no request
        # can arrive before the bundles are in memory
        state = build_state(settings, metrics, guardrails, keys)
        app.state.serving = state
        state.start_erasure_poll(settings.erasure_poll_s)
        if state.control is not None:
            state.control.start(settings.control_poll_s)
        if state.champion is not None:
            state.champion.start(settings.registry_poll_s)
        if monitor is not None:
            state.monitor = monitor
            monitor.set_bundle(state.bundles[DEFAULT_BUNDLE])
            monitor.start(state)
        if state.live_sync is not None:
            state.live_sync.start(settings.live.poll_s)
        settle_heap()
        metrics.start()
        state.ready = True
        log.info("ready: %s", ", ".join(f"{n}={b.version}" for n, b in state.bundles.items()))
        try:
            yield
        finally:
            state.close()
            metrics.stop()

    app = FastAPI(title="recsys", version="1", lifespan=lifespan,
                  summary="Hybrid e-commerce recommendations, events and A/B experiments")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.serving = None
    app.state.served_window = served
    metrics.watch_served(served, lambda: _catalog_items(app))
    monitor = Monitor(settings.monitoring, served) if settings.monitoring.enabled else None
    if monitor is not None:
        metrics.watch_monitor(monitor)
    errors.install(app)
    for module in (recommendations, events, catalog, experiments, admin, health, monitoring,
                   dashboard, dashboard_page):
        app.include_router(module.router)
    install_openapi(app, settings.limits)
    # the last added is outermost: metrics see every answer, 413s included; sizes are checked
    # before any parsing, a query parameter given twice is refused; CORS answers browsers'
    # preflight requests before anything else
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(SingleQueryValues)
    app.add_middleware(MetricsMiddleware, metrics=metrics, guardrails=guardrails,
                       guarded_path=recommendations.RECOMMENDATIONS_PATH, served=served)
    if settings.cors.allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors.allow_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Content-Type", KEY_HEADER], max_age=600)
    return app


def _catalog_items(app: FastAPI) -> int | None:
    """Items in the champion's catalog (the denominator of coverage); None before loading."""
    state: ServingState | None = app.state.serving
    if state is None or DEFAULT_BUNDLE not in state.bundles:
        return None
    return len(state.bundles[DEFAULT_BUNDLE].recommender.items)


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory serving.app:app_from_env`` (one call per worker):
    settings from ``RECSYS_SERVING_CONFIG`` and/or ``RECSYS_SERVING_BUNDLE``."""
    return create_app(settings_from_env())
