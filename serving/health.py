"""The live window of served lists: what this worker recommended lately, and how it went.

A bounded ring of the last ``window`` answers of ``POST /v1/recommendations`` (time, latency,
fallback, arm, item ids), recorded by the metrics middleware after each answer (O(1) under a
lock). Its summary is computed only when asked (the dashboard's model health view, ``/metrics``
at scrape time):

* request rate over the last ``rate_window_s`` seconds, latency percentiles, fallback rate;
* catalog coverage: distinct items served / items in the champion's catalog;
* popularity concentration: the share of recommendation slots that went to the top
  ``top_fraction`` (1%) of the catalog, counted as the ``ceil(top_fraction x catalog)`` most
  served items. A list of popular items only scores near 1, a shop-wide spread near
  ``top_fraction``.

Everything is per worker (each uvicorn worker has its own ring, like its Prometheus registry).
The drift monitor (issue 13) is meant to extend this: it reads :meth:`ServedWindow.snapshot`
(every sample has its arm and items; scores or features can join :class:`Served` later) and
compares the window against the training snapshot.

>>> w = ServedWindow(size=100)
>>> w.record(Served(at=0.0, latency_s=0.002, fallback=False, arm="default",
...                 items=("i1", "i2")))
>>> w.summary(catalog_items=200, now=1.0).coverage
0.01
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ALL = "all"     # the arm label of the whole window
QUANTILES = (0.5, 0.9, 0.95, 0.99)
# latency histogram bounds (ms) of the dashboard's plot; the last bucket is open-ended
LATENCY_BOUNDS_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 60, 100, 250)


class Served(NamedTuple):
    """One answered recommendation request (a NamedTuple: cheap to make on the request path)."""

    at: float               # wall clock, seconds since the epoch
    latency_s: float        # as the metrics middleware measured it
    fallback: bool          # the user was unknown (popularity / context fallback)
    arm: str                # "default" or "experiment/variant"
    items: tuple[str, ...]  # item ids, in list order


@dataclass(frozen=True)
class ItemShare:
    item_id: str
    slots: int
    share: float            # of every slot in the window


@dataclass(frozen=True)
class WindowSummary:
    """What a window (or one arm's part of it) says. Rates and shares are None when the window
    has nothing to count them over."""

    lists: int                      # served lists in the window
    span_s: float                   # newest - oldest sample
    requests_per_s: float | None    # over the last rate_window_s seconds
    latency_ms: dict[str, float]    # "p50", "p90", "p95", "p99"
    fallback_rate: float | None
    slots: int                      # items served, summed over the lists
    distinct_items: int
    catalog_items: int
    coverage: float | None          # distinct_items / catalog_items
    top_n: int                      # how many items are the catalog's top fraction
    top_share: float | None         # share of slots that went to the top_n most served items
    top_items: list[ItemShare]      # the most served items, at most ten
    latency_histogram: list[tuple[float | None, int]]   # (upper bound ms, None = open), count


def quantile_name(q: float) -> str:
    return f"p{round(q * 100):d}"


class ServedWindow:
    """The ring of recent :class:`Served` samples, with its summaries."""

    def __init__(self, size: int = 2000, *, rate_window_s: float = 60.0,
                 top_fraction: float = 0.01) -> None:
        if size < 1 or rate_window_s <= 0 or not 0 < top_fraction <= 1:
            raise ValueError(f"ServedWindow(size={size}, rate_window_s={rate_window_s}, "
                             f"top_fraction={top_fraction}): expected size >= 1, "
                             f"rate_window_s > 0 and 0 < top_fraction <= 1")
        self.size = size
        self.rate_window_s = rate_window_s
        self.top_fraction = top_fraction
        self._ring: deque[Served] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, served: Served) -> None:
        with self._lock:
            self._ring.append(served)

    def snapshot(self) -> list[Served]:
        """The samples, oldest first (a copy: the ring keeps moving)."""
        with self._lock:
            return list(self._ring)

    def clear(self) -> None:
        with self._lock:
            self._ring.clear()

    def summary(self, catalog_items: int, *, now: float | None = None) -> WindowSummary:
        """The summary of the whole window."""
        ring = self.snapshot()
        return summarize(ring, catalog_items, now=time.time() if now is None else now,
                         rate_window_s=self.rate_window_s, top_fraction=self.top_fraction,
                         covered_since=self._since(ring))

    def by_arm(self, catalog_items: int, *, now: float | None = None
               ) -> dict[str, WindowSummary]:
        """``all`` and one summary per arm seen in the window, from one snapshot."""
        samples = self.snapshot()
        now = time.time() if now is None else now
        since = self._since(samples)
        arms: dict[str, list[Served]] = {}
        for s in samples:
            arms.setdefault(s.arm, []).append(s)
        return {arm: summarize(part, catalog_items, now=now, covered_since=since,
                               rate_window_s=self.rate_window_s, top_fraction=self.top_fraction)
                for arm, part in [(ALL, samples), *sorted(arms.items())]}

    def _since(self, ring: Sequence[Served]) -> float | None:
        """When the ring is full, the time of its oldest sample: before it, requests may have
        been pushed out, so rates are taken from there on."""
        return ring[0].at if len(ring) >= self.size else None


def summarize(samples: Sequence[Served], catalog_items: int, *, now: float,
              rate_window_s: float, top_fraction: float, covered_since: float | None = None
              ) -> WindowSummary:
    """The numbers of :class:`WindowSummary` over ``samples`` (oldest first)."""
    n = len(samples)
    top_n = max(1, math.ceil(top_fraction * catalog_items)) if catalog_items > 0 else 0
    if n == 0:
        return WindowSummary(0, 0.0, 0.0, {}, None, 0, 0, catalog_items, None, top_n, None, [],
                             [])
    latency_ms = np.fromiter((s.latency_s for s in samples), np.float64, n) * 1000.0
    counts: Counter[str] = Counter()
    for s in samples:
        counts.update(s.items)
    slots = sum(counts.values())
    ranked = counts.most_common()
    top_slots = sum(c for _, c in ranked[:top_n])
    return WindowSummary(
        lists=n, span_s=samples[-1].at - samples[0].at,
        requests_per_s=request_rate([s.at for s in samples], now, rate_window_s,
                                    covered_since),
        latency_ms={quantile_name(q): float(np.quantile(latency_ms, q)) for q in QUANTILES},
        fallback_rate=sum(s.fallback for s in samples) / n, slots=slots,
        distinct_items=len(counts), catalog_items=catalog_items,
        coverage=len(counts) / catalog_items if catalog_items > 0 else None, top_n=top_n,
        top_share=top_slots / slots if slots else None,
        top_items=[ItemShare(i, c, c / slots) for i, c in ranked[:10]],
        latency_histogram=histogram(latency_ms))


def request_rate(times: Sequence[float], now: float, window_s: float,
                 covered_since: float | None = None) -> float:
    """Requests per second over the last ``window_s`` seconds before ``now``. A full ring
    may not reach back that far (``covered_since``, its oldest sample): the rate is then taken
    over the time it does cover."""
    start = now - window_s
    if covered_since is not None and covered_since > start:
        start = covered_since
    recent = int(np.count_nonzero(np.asarray(times, dtype=np.float64) >= start))
    return recent / max(now - start, 1e-9)


def histogram(latency_ms: np.ndarray) -> list[tuple[float | None, int]]:
    """Counts per latency bucket (``<= bound``; the last bucket has no bound)."""
    edges = np.asarray(LATENCY_BOUNDS_MS, dtype=np.float64)
    index = np.searchsorted(edges, latency_ms, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    bounds: list[float | None] = [float(b) for b in edges]
    return list(zip([*bounds, None], (int(c) for c in counts), strict=True))


class ServedWindowCollector(Collector):
    """The window's numbers in ``/metrics``, evaluated at scrape time (nothing on the request
    path), labelled ``arm`` = ``all`` or the arm:

    * ``recsys_served_lists``, ``recsys_served_requests_per_second``;
    * ``recsys_served_latency_seconds{quantile}``, ``recsys_served_fallback_rate``;
    * ``recsys_served_coverage``, ``recsys_served_top_share``.
    """

    def __init__(self, window: ServedWindow, catalog_items: Callable[[], int | None]) -> None:
        self.window = window
        self.catalog_items = catalog_items

    def collect(self) -> Iterable[GaugeMetricFamily]:
        n_items = self.catalog_items()
        summaries = self.window.by_arm(n_items or 0) if n_items is not None else {}
        families = {
            "lists": GaugeMetricFamily("recsys_served_lists", "served lists in this worker's "
                                       "window", labels=["arm"]),
            "rate": GaugeMetricFamily("recsys_served_requests_per_second",
                                      "recommendation requests per second (recent window)",
                                      labels=["arm"]),
            "latency": GaugeMetricFamily("recsys_served_latency_seconds",
                                         "latency quantiles over the window",
                                         labels=["arm", "quantile"]),
            "fallback": GaugeMetricFamily("recsys_served_fallback_rate",
                                          "share of lists served by the fallback",
                                          labels=["arm"]),
            "coverage": GaugeMetricFamily("recsys_served_coverage", "distinct items served / "
                                          "catalog items", labels=["arm"]),
            "top": GaugeMetricFamily("recsys_served_top_share", "share of slots that went to "
                                     "the top 1% of items", labels=["arm"]),
        }
        for arm, s in summaries.items():
            families["lists"].add_metric([arm], s.lists)
            if s.lists == 0:
                continue
            if s.requests_per_s is not None:
                families["rate"].add_metric([arm], s.requests_per_s)
            for q in QUANTILES:
                families["latency"].add_metric([arm, str(q)],
                                               s.latency_ms[quantile_name(q)] / 1000.0)
            for key, value in (("fallback", s.fallback_rate), ("coverage", s.coverage),
                               ("top", s.top_share)):
                if value is not None:
                    families[key].add_metric([arm], value)
        yield from families.values()
