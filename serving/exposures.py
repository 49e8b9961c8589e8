"""Exposure logging off the request path: a bounded queue drained by one writer thread.

An exposure records what a request in an experiment served (request id, experiment, variant,
unit, items with positions, model version, time). Writing one synchronously costs a SQLite
commit with ``synchronous=FULL``, 3-15 ms on our disks, against a latency budget of 3 ms at the
median. So requests only append to a queue (microseconds) and a writer thread stores the queue
in batches, one transaction (one fsync) per batch, every ``flush_interval`` or sooner when a
batch is full.

The trade-off, documented in ``docs/api.md``: exposures queued but not yet written are lost if
the process is killed (at most ``flush_interval`` plus one write of them); a full queue drops
new exposures and counts them (``recsys_exposures_total{result="dropped"}``) rather than slow
down or fail requests. Events (``POST /v1/events``) are different: they are acknowledged only
once committed. ``mode = "synchronous"`` writes each exposure before the response instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from serving.event_store import EventStore

log = logging.getLogger(__name__)

ResultHook = Callable[[str, int], None]   # (result, count): written, duplicate, dropped, failed

@dataclass(frozen=True)
class Exposure:
    request_id: str
    experiment: str
    variant: str
    unit: str
    items: tuple[str, ...]          # in rank order; position = index (0-based, as the store)
    model_version: str | None
    created_at: datetime


def write_exposures(store: EventStore, batch: Sequence[Exposure]) -> int:
    """Store ``batch`` in one call (one transaction in the SQLite store); returns rows
    inserted."""
    return store.add_exposures([{
        "request_id": e.request_id, "experiment": e.experiment, "variant": e.variant,
        "unit": e.unit, "items": list(e.items), "model_version": e.model_version,
        "created_at": e.created_at} for e in batch])


class ExposureWriter:
    """Queue exposures from request threads; one daemon thread writes them in batches.

    >>> # writer = ExposureWriter(store); writer.start(); writer.submit(exposure)
    >>> # writer.flush()   # wait until everything submitted so far is stored
    """

    def __init__(self, store: EventStore, *, max_queue: int = 20_000, max_batch: int = 1000,
                 flush_interval_s: float = 0.05, synchronous: bool = False,
                 on_result: ResultHook | None = None) -> None:
        self.store = store
        self.max_queue, self.max_batch = max_queue, max_batch
        self.flush_interval_s = flush_interval_s
        self.synchronous = synchronous
        self._on_result = on_result or (lambda result, n: None)
        self._pending: deque[Exposure] = deque()
        self._cond = threading.Condition()
        self._submitted = 0          # exposures accepted into the queue, ever
        self._finished = 0           # ... of which written or failed
        self._urgent = False         # a flush() is waiting: skip the batching delay
        self._first_at = 0.0         # monotonic time the oldest queued exposure arrived
        self._closing = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ producer side
    def start(self) -> None:
        if self.synchronous or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="exposure-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self.synchronous or (self._thread is not None and self._thread.is_alive())

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, exposure: Exposure) -> bool:
        """Queue (or, synchronous, write) one exposure; False when it was dropped."""
        if self.synchronous:
            self._write([exposure])
            return True
        with self._cond:
            if self._closing or len(self._pending) >= self.max_queue:
                dropped = True
            else:
                dropped = False
                if not self._pending:
                    self._first_at = time.monotonic()
                self._pending.append(exposure)
                self._submitted += 1
                # wake the writer for the first exposure of a batch (it starts the interval's
                # clock) and for a full batch; the ones in between cost no wake-up
                if len(self._pending) == 1 or len(self._pending) >= self.max_batch:
                    self._cond.notify_all()
        if dropped:
            self._on_result("dropped", 1)
        return not dropped

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every exposure submitted before this call is stored; False on timeout."""
        if self.synchronous or self._thread is None:
            return True
        with self._cond:
            target = self._submitted
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._finished >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending and self._closing:
                    return
                # let a batch build up for at most one interval after its first exposure,
                # unless it is full or someone waits for it
                deadline = self._first_at + self.flush_interval_s
                while (len(self._pending) < self.max_batch and not self._urgent
                       and not self._closing):
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
                n = min(len(self._pending), self.max_batch)
                batch = [self._pending.popleft() for _ in range(n)]
                if not self._pending:
                    self._urgent = False
                else:   # the rest waited since the batch was opened: it is due now
                    self._first_at = time.monotonic() - self.flush_interval_s
            self._write(batch)
            with self._cond:
                self._finished += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[Exposure]) -> None:
        try:
            inserted = write_exposures(self.store, batch)
        except Exception:  # a write error must not kill the writer (nor fail requests)
            log.exception("writing %d exposures failed; they are lost", len(batch))
            self._on_result("failed", len(batch))
            return
        self._on_result("written", inserted)
        if inserted < len(batch):
            self._on_result("duplicate", len(batch) - inserted)
