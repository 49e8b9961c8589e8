"""What each worker keeps of live traffic for drift monitoring (:mod:`serving.monitoring`):
bounded, O(1) per request, no I/O.

* :class:`FeatureSample`: the ranker feature rows and scores of the items served by the
  default bundle's hybrid ``for_you`` lists (what the bundle's feature profile describes,
  :mod:`recsys.profile`), the newest ``max_rows``; a new bundle version starts it afresh (its
  profile and feature list are its own).
* :class:`IngestWindow`: per ingested event, how late it reached the API (received - event
  time) and whether its item is one the served bundle was trained with; the newest ``size``.

>>> s = FeatureSample(max_rows=100)
>>> s.record("v1", np.zeros((5, 3)), np.zeros(5)); s.snapshot()[1].shape
(5, 3)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

import numpy as np


class FeatureSample:
    """The newest ``max_rows`` served feature rows (and their scores) of one bundle version."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.version: str | None = None
        self._blocks: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._rows = 0
        self._lock = threading.Lock()

    def record(self, version: str, features: np.ndarray, scores: np.ndarray) -> None:
        with self._lock:
            if version != self.version:
                self._blocks.clear()
                self._rows = 0
                self.version = version
            self._blocks.append((features, scores))
            self._rows += len(scores)
            while len(self._blocks) > 1 and self._rows > self.max_rows:
                self._rows -= len(self._blocks.popleft()[1])

    def snapshot(self) -> tuple[str | None, np.ndarray, np.ndarray]:
        """(version, feature rows, scores), oldest first; empty arrays before any traffic."""
        with self._lock:
            blocks = list(self._blocks)
            version = self.version
        if not blocks:
            return version, np.empty((0, 0)), np.empty(0)
        return (version, np.vstack([f for f, _ in blocks]),
                np.concatenate([s for _, s in blocks]))

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._rows = 0


class IngestWindow:
    """The newest ``size`` ingested events: lag in seconds and whether the item was known."""

    def __init__(self, size: int) -> None:
        self._ring: deque[tuple[float, bool]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, samples: Iterable[tuple[float, bool]]) -> None:
        with self._lock:
            self._ring.extend(samples)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(lag seconds, known item) of the window's events, oldest first."""
        with self._lock:
            ring = list(self._ring)
        return (np.fromiter((lag for lag, _ in ring), np.float64, len(ring)),
                np.fromiter((known for _, known in ring), bool, len(ring)))

    def clear(self) -> None:
        with self._lock:
            self._ring.clear()
