"""Live guardrails: each variant's p99 latency and fallback rate over its last N requests.

The thresholds are the serving config's ``[guardrails]`` (the same two the offline readout,
``evaluation.experiment_stats.check_guardrails``, applies to the logged data). Here they are
watched live so a bad variant shows up in ``GET /v1/experiments/{name}`` and in
``recsys_guardrail_ok`` within minutes, before anyone runs a readout. Nothing is switched off
automatically: stopping a variant is a config change a person makes.

Recording is O(1) under a lock (a ring buffer per variant); percentiles are computed only when
someone asks.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from serving.settings import Guardrails


@dataclass(frozen=True)
class Check:
    name: str            # latency_p99_ms | fallback_rate
    value: float
    threshold: float
    passed: bool


@dataclass(frozen=True)
class VariantStatus:
    requests: int        # in the window
    errors: int          # 5xx responses in the window
    checks: list[Check]  # empty until min_requests have been seen

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)


class GuardrailMonitor:
    """Per-variant sliding windows of (latency, fallback, error)."""

    def __init__(self, config: Guardrails) -> None:
        self.config = config
        self._windows: dict[str, deque[tuple[float, bool, bool]]] = {}
        self._lock = threading.Lock()

    def record(self, variant: str, latency_s: float, fallback: bool, *, error: bool = False
               ) -> None:
        with self._lock:
            window = self._windows.get(variant)
            if window is None:
                window = self._windows[variant] = deque(maxlen=self.config.window)
            window.append((latency_s, fallback, error))

    def status(self, variant: str) -> VariantStatus:
        with self._lock:
            samples = list(self._windows.get(variant, ()))
        if not samples:
            return VariantStatus(0, 0, [])
        arr = np.asarray(samples, dtype=np.float64)
        errors = int(arr[:, 2].sum())
        if len(samples) < self.config.min_requests:
            return VariantStatus(len(samples), errors, [])
        p99 = float(np.percentile(arr[:, 0], 99)) * 1000.0
        fallback = float(arr[:, 1].mean())
        g = self.config
        return VariantStatus(len(samples), errors, [
            Check("latency_p99_ms", round(p99, 3), g.latency_p99_ms, p99 <= g.latency_p99_ms),
            Check("fallback_rate", round(fallback, 4), g.fallback_rate,
                  fallback <= g.fallback_rate),
        ])

    def all_status(self) -> dict[str, VariantStatus]:
        with self._lock:
            names = list(self._windows)
        return {name: self.status(name) for name in names}
