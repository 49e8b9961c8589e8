"""A background thread that repeats one step at an interval: how each serving process follows
the shared store and registry (live events, the control log, erasures, the champion pointer) and
evaluates its monitors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Poller:
    """Calls ``step`` every ``interval_s`` on a daemon thread named ``name`` until stopped; a
    failing round is logged as ``failure`` and the next round retries (the store may be briefly
    away, a pointer half-edited, a bundle mid-swap)."""

    def __init__(self, step: Callable[[], object], name: str, failure: str) -> None:
        self.step, self.name, self.failure = step, name, failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval_s: float) -> None:
        """Start the thread (``interval_s <= 0``: never)."""
        if interval_s <= 0:
            return

        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.step()
                except Exception:
                    log.exception(self.failure)

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
