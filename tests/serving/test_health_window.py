"""The window of served lists (``serving.health``) on hand-made samples whose numbers are known,
and its export in ``/metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.health import (
    ALL,
    LATENCY_BOUNDS_MS,
    Served,
    ServedWindow,
    ServedWindowCollector,
    request_rate,
    summarize,
)


def served(at: float, items: tuple[str, ...], *, latency_ms: float = 2.0, fallback: bool = False,
           arm: str = "default") -> Served:
    return Served(at, latency_ms / 1000.0, fallback, arm, items)


def test_coverage_and_top_share_on_a_known_window() -> None:
    # catalog of 300 items: the top 1% is ceil(3) = 3 items
    lists = [("a", "b", "c", "d"), ("a", "b", "e", "f"), ("a", "c", "g", "h")]
    s = summarize([served(float(t), items) for t, items in enumerate(lists)], 300, now=3.0,
                  rate_window_s=60.0, top_fraction=0.01)
    assert (s.lists, s.slots, s.distinct_items, s.top_n) == (3, 12, 8, 3)
    assert s.coverage == pytest.approx(8 / 300)
    # a: 3 slots, b: 2, c: 2 -> 7 of 12
    assert s.top_share == pytest.approx(7 / 12)
    assert [(t.item_id, t.slots) for t in s.top_items[:3]] == [("a", 3), ("b", 2), ("c", 2)]


def test_popular_only_lists_concentrate_and_spread_lists_do_not() -> None:
    catalog = 1000          # top 1% = 10 items
    popular = [served(0.0, tuple(f"i{j}" for j in range(10))) for _ in range(50)]
    spread = [served(0.0, tuple(f"i{10 * n + j}" for j in range(10))) for n in range(100)]
    kw = {"now": 1.0, "rate_window_s": 60.0, "top_fraction": 0.01}
    assert summarize(popular, catalog, **kw).top_share == 1.0
    assert summarize(spread, catalog, **kw).top_share == pytest.approx(10 / 1000)
    assert summarize(spread, catalog, **kw).coverage == 1.0


def test_latency_percentiles_fallback_rate_and_histogram() -> None:
    latencies = [1.0, 2.0, 3.0, 4.0, 100.0]
    samples = [served(0.0, ("a",), latency_ms=ms, fallback=i < 2)
               for i, ms in enumerate(latencies)]
    s = summarize(samples, 10, now=1.0, rate_window_s=60.0, top_fraction=0.01)
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        assert s.latency_ms[name] == pytest.approx(float(np.quantile(latencies, q)))
    assert s.fallback_rate == pytest.approx(2 / 5)
    counts = dict(s.latency_histogram)
    assert sum(counts.values()) == 5
    assert counts[1.0] == 1 and counts[2.0] == 1 and counts[3.0] == 1 and counts[5.0] == 1
    assert counts[100.0] == 1 and counts[None] == 0
    assert len(s.latency_histogram) == len(LATENCY_BOUNDS_MS) + 1


def test_request_rate_over_the_recent_window() -> None:
    times = [0.0, 50.0, 100.0, 110.0, 119.0]
    assert request_rate(times, now=120.0, window_s=60.0) == pytest.approx(3 / 60)
    # a full ring that starts at t=100 covers only 20 s: 3 requests in 20 s
    assert request_rate(times[2:], now=120.0, window_s=60.0,
                        covered_since=100.0) == pytest.approx(3 / 20)


def test_ring_is_bounded_and_split_by_arm() -> None:
    window = ServedWindow(size=10, rate_window_s=60.0)
    for i in range(25):
        window.record(served(float(i), (f"i{i % 4}",), arm="exp/a" if i % 2 else "exp/b"))
    assert len(window.snapshot()) == 10
    arms = window.by_arm(100, now=25.0)
    assert list(arms) == [ALL, "exp/a", "exp/b"]
    assert arms[ALL].lists == 10 and arms["exp/a"].lists + arms["exp/b"].lists == 10
    # the ring covers t = 15..24 only: 10 requests over the 10 s since its oldest sample
    assert arms[ALL].requests_per_s == pytest.approx(10 / 10)


def test_empty_window_has_no_rates() -> None:
    s = ServedWindow(size=10).summary(50, now=0.0)
    assert (s.lists, s.coverage, s.top_share, s.fallback_rate, s.latency_ms) == (
        0, None, None, None, {})


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="top_fraction"):
        ServedWindow(size=10, top_fraction=0.0)


def test_collector_exports_the_window() -> None:
    window = ServedWindow(size=100)
    for i in range(20):
        window.record(served(float(i), ("a", "b", f"c{i}"), latency_ms=float(i + 1),
                             fallback=i == 0, arm="exp/a"))
    registry = CollectorRegistry()
    registry.register(ServedWindowCollector(window, lambda: 40))
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(generate_latest(registry).decode())
              for s in family.samples}
    summary = window.summary(40)
    assert values[("recsys_served_lists", (("arm", ALL),))] == 20
    assert values[("recsys_served_coverage", (("arm", "exp/a"),))] == pytest.approx(22 / 40)
    assert values[("recsys_served_top_share", (("arm", ALL),))] == pytest.approx(
        summary.top_share)
    assert values[("recsys_served_fallback_rate", (("arm", ALL),))] == pytest.approx(1 / 20)
    p99 = values[("recsys_served_latency_seconds", (("arm", ALL), ("quantile", "0.99")))]
    assert p99 == pytest.approx(summary.latency_ms["p99"] / 1000)
    # 1% of 40 items rounds up to 1 item: a (or b), 20 of the 60 slots
    assert math.isclose(summary.top_share or 0, 20 / 60)


def test_collector_before_loading_exports_nothing() -> None:
    registry = CollectorRegistry()
    registry.register(ServedWindowCollector(ServedWindow(size=10), lambda: None))
    assert "recsys_served_lists{" not in generate_latest(registry).decode()
