"""The event store on one SQLite file: :class:`SQLiteEventStore` (the default backend).

Example::

    with SQLiteEventStore("var/events.db") as store:
        store.add_events([{"event_id": "e1", "user_id": "u1", "item_id": "i9",
                           "event_type": "click", "timestamp": "2024-06-01T12:00:00Z"}])
        # -> (1, 0); the same call again -> (0, 1)
        store.export_events("data/served", items=catalog)   # canonical dataset directory
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import columns as C
from recsys.errors import DataError
from serving.audit import audit_subject, load_or_create_secret
from serving.event_store.base import (
    EVENT_COLUMNS,
    EXPORT_COLUMNS,
    ControlRecord,
    EventStore,
    ExportSummary,
    FeedRow,
    VariantCounts,
    check_control,
    event_filter,
    event_row,
    exposure_row,
    feed_sql,
    from_micros,
    now_us,
    origin,
    stored_event,
    write_export,
)
from serving.event_store.schema import IMPRESSION, StoreError, in_list
from serving.event_store.sqlite_schema import migrate

BUSY_TIMEOUT_S = 10.0
WAL_AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB with 4 KiB pages
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # truncate a WAL left larger than this after a burst
MAX_FEED_GAPS = 10_000  # SQL variables per event_feed query (SQLite allows 32,766)

# Only a repeated event_id is skipped. INSERT OR IGNORE would also silently skip rows that break
# a CHECK or NOT NULL constraint, and count them as "duplicates".
_INSERT_EVENT = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) "
                 "ON CONFLICT (event_id) DO NOTHING")
_INSERT_EXPOSURE = (
    "INSERT INTO exposures (request_id, experiment, variant, unit, items, model_version, "
    "created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")


class SQLiteEventStore(EventStore):
    """:class:`EventStore` on one SQLite file in WAL mode with ``synchronous=FULL``.

    Thread-safe: the API calls it from a threadpool. Writes share one connection under a lock
    (SQLite allows one writer at a time anyway, and the fsync dominates); every read opens its
    own short-lived connection, so a long export sees one snapshot and never blocks writers.
    (Consume :meth:`iter_events` promptly: an open snapshot holds back WAL checkpoints.)
    Several processes (uvicorn workers) may open the same file; a writer waits up to
    ``BUSY_TIMEOUT_S`` for the lock.
    """

    def __init__(self, path: str | Path, *, audit_secret: str | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        # the erasure log's key (serving.audit); without one given, read or created beside the
        # database on the first erasure (never for a store that is only read)
        self._secret = audit_secret
        self._lock = threading.Lock()
        self._conn = self._connect()
        # In WAL mode, synchronous=NORMAL fsyncs only at checkpoints: a power loss or OS crash
        # can lose the last committed transactions. The API answers 202 only after
        # add_events returns, so an acknowledged event must already be on disk: FULL fsyncs
        # the WAL at every commit. (Set per connection; journal_mode=WAL persists in the file.)
        self._conn.execute("PRAGMA synchronous = FULL")
        # Checkpoint every ~40 MB of WAL, not SQLite's 4 MB: random event ids dirty ~100 index
        # pages per batch; a hot page is then copied once per checkpoint, not once per batch
        # (measured: ~25% fewer bytes written per batch).
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        self._conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        # Erased rows are overwritten with zeros instead of lingering in free pages.
        self._conn.execute("PRAGMA secure_delete = ON")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode!r})")
        migrate(self._conn)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the shared connection: commit, or roll back and re-raise."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A private read connection holding one read transaction (a consistent snapshot)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    def add_events(self, batch: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        if not batch:
            return 0, 0
        received = now_us()
        # in event_id order, as the PostgreSQL store (where the order avoids deadlocks): the
        # same insertion order whatever the backend
        rows = sorted((event_row(event, i, received) for i, event in enumerate(batch)),
                      key=lambda row: row[0])
        try:
            with self._transaction() as conn:
                inserted = conn.executemany(_INSERT_EVENT, rows).rowcount
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, OverflowError,
                UnicodeEncodeError) as exc:
            # OverflowError: an integer beyond SQLite's 64 bits; UnicodeEncodeError: a lone
            # surrogate. The API bounds both before here; other callers get a DataError too.
            if isinstance(exc, sqlite3.ProgrammingError) and "binding" not in str(exc):
                raise
            raise DataError(f"event batch of {len(rows)} rejected, nothing written: "
                            f"{exc}") from None
        return inserted, len(rows) - inserted

    def add_exposures(self, batch: Sequence[Mapping[str, Any]]) -> int:
        rows = [exposure_row(e) for e in batch]
        if not rows:
            return 0
        with self._transaction() as conn:
            return int(conn.executemany(_INSERT_EXPOSURE, rows).rowcount)

    def count_events(self, *, user_id: str | None = None, event_type: str | None = None,
                     request_id: str | None = None) -> int:
        where, params = event_filter(user_id=user_id, request_id=request_id,
                                      event_types=None if event_type is None else [event_type])
        with self._snapshot() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()[0])

    def audit_subject(self, user_id: str) -> str:
        if self._secret is None:
            self._secret = load_or_create_secret(self.path)
        return audit_subject(user_id, self._secret)

    def delete_user(self, user_id: str) -> dict[str, int]:
        subject = self.audit_subject(user_id)
        with self._transaction() as conn:
            # the user's sessions: their events before logging in carry only the session id,
            # and an anonymous request's exposure has the session id as its unit
            sessions = [s for (s,) in conn.execute(
                "SELECT DISTINCT session_id FROM events WHERE user_id = ? "
                "AND session_id IS NOT NULL", (user_id,))]
            events = conn.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
            exposures = conn.execute("DELETE FROM exposures WHERE unit = ?",
                                     (user_id,)).rowcount
            for lo in range(0, len(sessions), 500):
                chunk = sessions[lo: lo + 500]
                marks = ", ".join("?" * len(chunk))
                # only anonymous events: a session id shared with another user is theirs too
                events += conn.execute(f"DELETE FROM events WHERE user_id IS NULL AND "
                                       f"session_id IN ({marks})", chunk).rowcount
                exposures += conn.execute(f"DELETE FROM exposures WHERE unit IN ({marks})",
                                          chunk).rowcount
            counts = {"events": events, "exposures": exposures, "sessions": len(sessions)}
            conn.execute("INSERT INTO audit (action, subject, counts, at_us) VALUES (?, ?, ?, ?)",
                         ("delete_user", subject, json.dumps(counts), now_us()))
            # Keeping the user id in clear in the audit log would defeat the erasure; the keyed
            # hash still answers "was user X erased, and when?" for whoever holds the secret.
        with self._lock:
            # Best effort: copy the zeroed pages into the main file and empty the WAL, which
            # still holds the old page images. No waiting (busy_timeout 0): with an export
            # reading, this just returns, and the WAL frames are overwritten later.
            self._conn.execute("PRAGMA busy_timeout = 0")
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return counts

    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]:
        out: dict[str, VariantCounts] = {}
        with self._snapshot() as conn:
            for variant, units, exposures in conn.execute(
                    "SELECT variant, COUNT(DISTINCT unit), COUNT(*) FROM exposures "
                    "WHERE experiment = ? GROUP BY variant ORDER BY variant", (experiment,)):
                out[variant] = VariantCounts(units=units, exposures=exposures)
            # CROSS JOIN fixes the loop order: one scan of events, each probing exposures by
            # primary key. (Left to itself the planner may scan events once per exposure.)
            for variant, event_type, n in conn.execute(
                    "SELECT x.variant, e.event_type, COUNT(*) FROM events AS e "
                    "CROSS JOIN exposures AS x ON x.request_id = e.request_id "
                    "WHERE e.request_id IS NOT NULL AND x.experiment = ? "
                    "GROUP BY x.variant, e.event_type", (experiment,)):
                out[variant].events[event_type] = n
        return out

    def iter_events(self, *, user_id: str | None = None,
                    event_types: Sequence[str] | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> Iterator[dict[str, Any]]:
        where, params = event_filter(user_id=user_id, event_types=event_types, since=since,
                                     until=until)
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events{where} ORDER BY rowid"
        with self._snapshot() as conn:
            for row in conn.execute(sql, params):
                yield stored_event(row)

    def iter_exposures(self, experiment: str) -> Iterator[dict[str, Any]]:
        with self._snapshot() as conn:
            for request_id, variant, unit, created in conn.execute(
                    "SELECT request_id, variant, unit, created_at_us FROM exposures "
                    "WHERE experiment = ? ORDER BY created_at_us, request_id", (experiment,)):
                yield {"request_id": request_id, "variant": variant, "unit": unit,
                       "created_at": from_micros(created)}

    def audit_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        with self._snapshot() as conn:
            rows = conn.execute("SELECT id, action, subject, counts, at_us FROM audit "
                                "WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        return [{"id": i, "action": action, "subject": subject, "counts": json.loads(counts),
                 "at": from_micros(at)} for i, action, subject, counts, at in rows]

    def add_control(self, kind: str, subject: str, payload: Mapping[str, Any]) -> int:
        text = check_control(kind, subject, payload)
        with self._transaction() as conn:   # one writer at a time: ids follow commit order
            cur = conn.execute("INSERT INTO control (kind, subject, payload, origin, at_us) "
                               "VALUES (?, ?, ?, ?, ?)", (kind, subject, text, origin(),
                                                          now_us()))
        return int(cur.lastrowid or 0)

    def control_log(self, after_id: int = 0, kind: str | None = None) -> list[ControlRecord]:
        sql = "SELECT id, kind, subject, payload, origin, at_us FROM control WHERE id > ?"
        params: list[Any] = [after_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        with self._snapshot() as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        return [ControlRecord(i, k, subject, json.loads(payload), who, from_micros(at))
                for i, k, subject, payload, who, at in rows]

    def event_feed(self, *, after: int = 0, also: Sequence[int] = (),
                   before: int | None = None, limit: int = 10_000) -> list[FeedRow]:
        # rowid follows commit order: one writer at a time holds the lock from insert to commit
        also = list(also)[:MAX_FEED_GAPS]
        sql = feed_sql("rowid", "?", after=after, before=before, also=len(also), limit=limit)
        params = [before] if before is not None else [after, *also]
        with self._snapshot() as conn:
            return [FeedRow(*row) for row in conn.execute(sql, params)]

    def export_events(self, out_dir: str | Path,
                      items: pd.DataFrame | None = None) -> ExportSummary:
        canonical = in_list(C.EVENT_TYPES)
        with self._snapshot() as conn:
            impressions, anonymous = conn.execute(
                f"SELECT COALESCE(SUM(event_type = '{IMPRESSION}'), 0), "
                f"COALESCE(SUM(event_type IN ({canonical}) AND user_id IS NULL), 0) "
                "FROM events").fetchone()
            rows = conn.execute(
                f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events "
                f"WHERE event_type IN ({canonical}) AND user_id IS NOT NULL ORDER BY rowid"
            ).fetchall()
        return write_export(rows, out_dir, items, impressions, anonymous)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
