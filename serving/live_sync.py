"""Keeping every worker's live state and catalog in step with the shared store.

One :class:`LiveSync` thread per process (uvicorn worker, replica) reads, every ``live.poll_s``:

1. the events stored after the last one it has seen (:meth:`EventStore.event_feed`, by
   insertion order), into the :class:`~serving.live.LiveState`. An event accepted by any worker
   is in every worker's state within about one poll interval. On PostgreSQL an insertion
   number is taken before the commit, so a row may become visible after rows numbered above
   it: numbers skipped in a read are asked for again in the next reads for ``GAP_TIMEOUT_S``
   (a transaction that takes longer to commit is missed by the live state, not by the store);
2. the erasures of the audit log, applied to the live state (users are matched by the keyed
   hash of their id, :mod:`serving.privacy`); read after the events, so an event read from
   before an erasure's commit is dropped with its user;
3. the catalog changes of the control log, applied to every bundle (:mod:`serving.catalog`).

At start-up :meth:`LiveSync.rebuild` reads the store backwards from its newest event, within
``live.rebuild_window_s`` (by time received) and at most ``live.rebuild_max_events``, so a
restart finds the shoppers as they were.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from recsys.history import TYPE_CODE
from serving.event_store import EventStore, FeedRow
from serving.event_store.base import now_us
from serving.live import LiveEvent, LiveState
from serving.polling import Poller
from serving.privacy import DELETE_USER

if TYPE_CHECKING:
    from serving.state import ServingState

log = logging.getLogger(__name__)
GAP_TIMEOUT_S = 10.0     # how long a skipped insertion number is asked for again
MAX_GAPS = 5_000         # skipped numbers remembered (the oldest are given up first)
REBUILD_PAGE = 5_000


def to_live(row: FeedRow) -> LiveEvent | None:
    """The live event of a stored row; None for an impression (not an interaction)."""
    code = TYPE_CODE.get(row.event_type)
    if code is None:
        return None
    return LiveEvent(row.event_id, row.item_id, code, row.timestamp_us // 1_000_000,
                     int(row.quantity), np.nan if row.price is None else float(row.price))


class LiveSync:
    """Reads the store for one process's live state and catalog (see the module docstring)."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.live: LiveState = state.live
        self.store: EventStore = state.store
        self.cursor = 0
        self.gaps: dict[int, float] = {}          # skipped number -> when first noticed
        self.last_audit_id = 0
        self._lock = threading.Lock()             # one reader of the store at a time
        self._poller = Poller(self.poll_once, "live-sync",
                              "reading the store for the live state failed")

    # ------------------------------------------------------------------ events
    def _add(self, rows: list[FeedRow]) -> int:
        added = 0
        for row in rows:
            event = to_live(row)
            if event is not None and self.live.add(row.user_id, row.session_id, event):
                added += 1
        return added

    def rebuild(self) -> int:
        """Fill the state from the newest stored events (module docstring); returns events
        added. The feed then continues after the newest one."""
        settings = self.state.settings.live
        with self._lock:
            self.last_audit_id = max((r["id"] for r in self.store.audit_log()), default=0)
            since = now_us() - int(settings.rebuild_window_s * 1e6)
            rows: list[FeedRow] = []
            before: int | None = None
            while len(rows) < settings.rebuild_max_events:
                page = self.store.event_feed(
                    before=before if before is not None else 2**62,
                    limit=min(REBUILD_PAGE, settings.rebuild_max_events - len(rows)))
                recent = [r for r in page if r.received_at_us >= since]
                rows += recent
                if len(recent) < len(page) or len(page) == 0:
                    break
                before = page[-1].seq
            rows.reverse()                              # oldest first
            if rows:
                self.cursor = rows[-1].seq
                seen = {r.seq for r in rows}
                now = time.monotonic()
                low = max(rows[0].seq, self.cursor - MAX_GAPS)
                self.gaps = {s: now for s in range(low, self.cursor) if s not in seen}
            else:
                self.cursor = max((r.seq for r in self.store.event_feed(before=2**62, limit=1)),
                                  default=0)
            added = self._add(rows)
        log.info("live state rebuilt from %d event(s): %d shopper(s), %d session(s)", len(rows),
                 self.live.shoppers, self.live.sessions)
        return added

    def _read_events(self) -> int:
        now = time.monotonic()
        self.gaps = {s: t for s, t in self.gaps.items() if now - t < GAP_TIMEOUT_S}
        limit = self.state.settings.live.max_rows_per_poll
        rows = self.store.event_feed(after=self.cursor, also=sorted(self.gaps), limit=limit)
        if not rows:
            return 0
        for row in rows:
            self.gaps.pop(row.seq, None)
        fresh = sorted(r.seq for r in rows if r.seq > self.cursor)
        if fresh:
            expected = self.cursor + 1
            for seq in fresh:
                for missing in range(max(expected, seq - MAX_GAPS), seq):
                    self.gaps[missing] = now
                expected = seq + 1
            self.cursor = fresh[-1]
            while len(self.gaps) > MAX_GAPS:
                self.gaps.pop(min(self.gaps))
        return self._add(rows)

    # ------------------------------------------------------------------ erasures
    def _read_erasures(self) -> int:
        records = self.store.audit_log(after_id=self.last_audit_id)
        if not records:
            return 0
        self.last_audit_id = max(r["id"] for r in records)
        subjects = {r["subject"] for r in records if r["action"] == DELETE_USER}
        users = [u for u in self.live.users() if self.store.audit_subject(u) in subjects] \
            if subjects else []
        for user in users:
            self.live.forget_user(user)
        return len(users)

    def forget(self, user_id: str) -> None:
        """Drop the user's live state now (this process's erasure), after any read running."""
        with self._lock:
            self.live.forget_user(user_id)

    # ------------------------------------------------------------------ the loop
    def poll_once(self) -> int:
        """One round: events, erasures, catalog changes; returns the events added."""
        with self._lock:
            added = self._read_events()
            self._read_erasures()
        self.state.sync_catalog()
        return added

    def start(self, interval_s: float) -> None:
        self._poller.start(interval_s)

    def stop(self) -> None:
        self._poller.stop()
