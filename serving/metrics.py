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
* ``recsys_served_*{arm}``: the window of recently served lists (see :mod:`serving.health`);
* ``recsys_monitor_value{check}``, ``recsys_alert{check}``, ``recsys_feature_psi{feature}``...:
  drift and health monitoring (see :mod:`serving.monitoring`).

**Several workers of one host** (``recsys serve --workers N``, or uvicorn/gunicorn workers):
prometheus-client's multiprocess mode, on when ``PROMETHEUS_MULTIPROC_DIR`` names a directory
before the process starts (``recsys serve --workers N`` sets one up). Every worker then writes
its values to files there and whichever worker answers ``/metrics`` merges all of them:
counters and histograms are summed over the workers (including ones that have exited, so totals
never go back), and the gauges say how they combine: ``recsys_exposure_queue`` and
``recsys_model_info`` are summed over live workers (model info = how many workers serve that
version), ``recsys_guardrail_value`` is the worst (highest) live worker's and
``recsys_guardrail_ok`` the lowest (0 if any worker's window breaches). Gauges of workers that
died without a clean stop are dropped at the next scrape. **Replicas on several hosts** each
have their own directory (or none): scrape every replica, and sum in Prometheus.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.guardrails import GuardrailMonitor
from serving.health import Served, ServedWindow, ServedWindowCollector
from serving.monitoring import GAUGES, Monitor, report_samples

NO_VARIANT = "none"
VARIANT_KEY = "variant"          # request.state keys the handlers set for the middleware
FALLBACK_KEY = "fallback"
SERVED_KEY = "served_items"      # the item ids of a recommendation answer, for the window
# latency buckets around the budgets: 3 ms p50, 10 ms p99 at c=1, 40 ms p99 at c=8
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06,
                   0.1, 0.25, 0.5, 1.0, 2.5)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_S = 1.0     # multiprocess mode: how often this worker publishes its sampled gauges
_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, if this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Metrics:
    """The app's metric objects and their registry (see the module docstring for several
    workers)."""

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess_dir()
        self._sampled: list[Callable[[], None]] = []   # multiprocess: gauges set by refresh()
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()
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
                                    registry=r, multiprocess_mode="livesum")
        self.model_info = Gauge("recsys_model_info", "loaded bundle versions (1 per process "
                                "serving it)", ["bundle", "version"], registry=r,
                                multiprocess_mode="livesum")
        self.reloads = Counter("recsys_reloads", "admin bundle reloads", ["bundle", "result"],
                               registry=r)

    def set_model(self, bundle: str, version: str, previous: str | None = None) -> None:
        if previous is not None and previous != version:
            if self.multiprocess_dir:   # no remove() in multiprocess mode: 0 processes serve it
                self.model_info.labels(bundle, previous).set(0)
            else:
                try:
                    self.model_info.remove(bundle, previous)
                except KeyError:
                    pass
        self.model_info.labels(bundle, version).set(1)

    def watch_queue(self, size: Callable[[], int]) -> None:
        if self.multiprocess_dir:   # no set_function in multiprocess mode: sampled
            self._sampled.append(lambda: self.exposure_queue.set(float(size())))
        else:
            self.exposure_queue.set_function(lambda: float(size()))

    def watch_guardrails(self, monitor: GuardrailMonitor) -> None:
        if not self.multiprocess_dir:
            self.registry.register(_GuardrailCollector(monitor))
            return
        # custom collectors see one process only: publish this worker's windows as gauges
        labels = ["variant", "guardrail"]
        value = Gauge("recsys_guardrail_value", "live guardrail value per variant (worst "
                      "worker)", labels, registry=None, multiprocess_mode="livemax")
        ok = Gauge("recsys_guardrail_ok", "1 = within threshold, 0 = breached (in any worker)",
                   labels, registry=None, multiprocess_mode="livemin")

        def publish() -> None:
            for variant, status in monitor.all_status().items():
                for check in status.checks:
                    value.labels(variant, check.name).set(check.value)
                    ok.labels(variant, check.name).set(float(check.passed))

        self._sampled.append(publish)

    def refresh(self) -> None:
        """Multiprocess mode: write this worker's sampled gauges to its files."""
        for publish in self._sampled:
            publish()

    def start(self) -> None:
        """Multiprocess mode: publish the sampled gauges every ``REFRESH_S`` (a scrape answered
        by another worker reads this worker's files)."""
        if not self.multiprocess_dir or self._refresher is not None:
            return

        def run() -> None:
            while not self._stop.wait(REFRESH_S):
                self.refresh()

        self._refresher = threading.Thread(target=run, name="metrics-refresh", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        """Stop publishing; in multiprocess mode this worker's live gauges leave the merge."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(5.0)
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    def exposition(self) -> bytes:
        """The Prometheus text for ``/metrics``: this app's registry, or in multiprocess mode
        the merge of every worker's files."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        self.refresh()
        for path in glob.glob(os.path.join(self.multiprocess_dir, "gauge_live*.db")):
            match = _LIVE_FILE.search(os.path.basename(path))
            if match and not _alive(int(match.group(1))):   # killed without a clean stop
                mark_process_dead(int(match.group(1)), self.multiprocess_dir)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def watch_served(self, window: ServedWindow, catalog_items: Callable[[], int | None]
                     ) -> None:
        self.registry.register(ServedWindowCollector(window, catalog_items))

    def watch_monitor(self, monitor: Monitor) -> None:
        """The drift and health monitor's gauges (its last evaluation)."""
        if not self.multiprocess_dir:
            self.registry.register(_MonitorCollector(monitor))
            return
        # multiprocess: each worker publishes its own; /metrics shows the worst live worker
        gauges = {name: Gauge(name, help_, list(labels), registry=None,
                              multiprocess_mode="livemax")
                  for name, (help_, labels) in GAUGES.items()}

        def publish() -> None:
            for name, samples in report_samples(monitor.last).items():
                for labels, value in samples:
                    (gauges[name].labels(*labels) if labels else gauges[name]).set(value)

        self._sampled.append(publish)


class _MonitorCollector(Collector):
    """The monitor's last report, read at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, samples in report_samples(self.monitor.last).items():
            help_, labels = GAUGES[name]
            family = GaugeMetricFamily(name, help_, labels=list(labels))
            for values, value in samples:
                family.add_metric(list(values), value)
            yield family


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
