"""Prometheus metrics, one registry per app instance (two apps in one process, as in the tests,
never collide), and the ASGI middleware that times every request.

Exposed at ``GET /metrics``:

* ``recsys_requests_total{endpoint, method, status, variant}`` and
  ``recsys_request_latency_seconds{endpoint, variant}`` (histogram) - every request, by route
  template (``/v1/items/{item_id}/similar``, never the raw path: bounded label values);
* ``recsys_recommendations_total{variant}`` and ``recsys_fallbacks_total{variant}``: the
  fallback rate is their ratio;
* ``recsys_events_total{result}``: events inserted / duplicate / rejected;
* ``recsys_exposures_total{result}`` and ``recsys_exposure_queue``: the exposure log;
* ``recsys_model_info{bundle, version}``, ``recsys_reloads_total{bundle, result}``;
* ``recsys_guardrail_value{variant, guardrail}`` and ``recsys_guardrail_ok{...}``: the live
  guardrails of experiment variants (see :mod:`serving.guardrails`);
* ``recsys_served_*{arm}``: the window of recently served lists (see :mod:`serving.health`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.guardrails import GuardrailMonitor
from serving.health import Served, ServedWindow, ServedWindowCollector

NO_VARIANT = "none"
VARIANT_KEY = "variant"          # request.state keys the handlers set for the middleware
FALLBACK_KEY = "fallback"
SERVED_KEY = "served_items"      # the item ids of a recommendation answer, for the window
# latency buckets around the budgets: 3 ms p50, 10 ms p99 at c=1, 40 ms p99 at c=8
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06,
                   0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The app's metric objects and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("recsys_requests", "HTTP requests",
                                ["endpoint", "method", "status", "variant"], registry=r)
        self.latency = Histogram("recsys_request_latency_seconds", "request latency",
                                 ["endpoint", "variant"], buckets=LATENCY_BUCKETS, registry=r)
        self.recommendations = Counter("recsys_recommendations",
                                       "recommendation responses", ["variant"], registry=r)
        self.fallbacks = Counter("recsys_fallbacks", "recommendation responses for an unknown "
                                 "user (popularity/context fallback)", ["variant"], registry=r)
        self.events = Counter("recsys_events", "events received, by result",
                              ["result"], registry=r)
        self.exposures = Counter("recsys_exposures", "exposures, by result", ["result"],
                                 registry=r)
        self.exposure_queue = Gauge("recsys_exposure_queue", "exposures waiting to be written",
                                    registry=r)
        self.model_info = Gauge("recsys_model_info", "loaded bundle versions (value 1)",
                                ["bundle", "version"], registry=r)
        self.reloads = Counter("recsys_reloads", "admin bundle reloads", ["bundle", "result"],
                               registry=r)

    def set_model(self, bundle: str, version: str, previous: str | None = None) -> None:
        if previous is not None:
            try:
                self.model_info.remove(bundle, previous)
            except KeyError:
                pass
        self.model_info.labels(bundle, version).set(1)

    def watch_queue(self, size: Callable[[], int]) -> None:
        self.exposure_queue.set_function(lambda: float(size()))

    def watch_guardrails(self, monitor: GuardrailMonitor) -> None:
        self.registry.register(_GuardrailCollector(monitor))

    def watch_served(self, window: ServedWindow, catalog_items: Callable[[], int | None]
                     ) -> None:
        self.registry.register(ServedWindowCollector(window, catalog_items))


class _GuardrailCollector(Collector):
    """Evaluates the guardrail windows at scrape time (no work on the request path)."""

    def __init__(self, monitor: GuardrailMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterable[GaugeMetricFamily]:
        value = GaugeMetricFamily("recsys_guardrail_value", "live guardrail value per variant",
                                  labels=["variant", "guardrail"])
        ok = GaugeMetricFamily("recsys_guardrail_ok", "1 = within threshold, 0 = breached",
                               labels=["variant", "guardrail"])
        for variant, status in self.monitor.all_status().items():
            for check in status.checks:
                value.add_metric([variant, check.name], check.value)
                ok.add_metric([variant, check.name], float(check.passed))
        yield value
        yield ok


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than ``BaseHTTPMiddleware``): counts and times each HTTP
    request by route template and variant; feeds the guardrail monitor and the window of
    served lists for recommendations."""

    def __init__(self, app: ASGIApp, metrics: Metrics, guardrails: GuardrailMonitor,
                 guarded_path: str, served: ServedWindow | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.guardrails = guardrails
        self.guarded_path = guarded_path
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            state = scope.get("state") or {}
            variant = str(state.get(VARIANT_KEY, NO_VARIANT))
            self.metrics.requests.labels(endpoint, scope["method"], str(status), variant).inc()
            self.metrics.latency.labels(endpoint, variant).observe(elapsed)
            if endpoint == self.guarded_path and variant != NO_VARIANT:
                fallback = bool(state.get(FALLBACK_KEY, False))
                self.guardrails.record(variant, elapsed, fallback, error=status >= 500)
                items = state.get(SERVED_KEY)
                if self.served is not None and items is not None and status < 400:
                    self.served.record(Served(time.time(), elapsed, fallback, variant, items))
