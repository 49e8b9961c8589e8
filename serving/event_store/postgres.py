"""The event store on a PostgreSQL server: :class:`PostgresEventStore`, for any number of API
replicas on any number of hosts sharing one store.

psycopg 3 with its connection pool (``psycopg_pool``): the API calls the store from a
threadpool, the exposure writer and the pollers from their own threads, and each thread takes a
connection for one transaction and gives it back, so concurrent requests never queue behind
one connection (SQLite serialises writers anyway; PostgreSQL does not need to).

The promises are those of the SQLite store, kept the PostgreSQL way:

* acknowledged = committed: every write is one transaction and returns after COMMIT, with
  ``synchronous_commit`` at least ``on`` (a session where the server default is ``off`` is
  set back to ``on``), so the WAL record is flushed before the call returns;
* ``event_id`` idempotency under concurrent writers: ``INSERT ... ON CONFLICT DO NOTHING`` on
  the primary key; a second writer of the same id waits for the first to commit and counts it
  a duplicate. Each batch is inserted in ``event_id`` order, so two overlapping batches take
  their row locks in the same order and cannot deadlock;
* the audit and control logs are read by id ("everything after the last one I saw"): their
  writers take a transaction-scoped advisory lock before inserting, so ids are assigned in
  commit order and a poller can never skip a record committed late with a smaller id.

Example::

    with PostgresEventStore("postgresql://recsys@db.internal/shop",
                            audit_secret=os.environ["RECSYS_AUDIT_SECRET"]) as store:
        store.add_events(batch)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from recsys import columns as C
from recsys.errors import DataError
from serving.audit import audit_subject
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
from serving.event_store.postgres_schema import migrate
from serving.event_store.schema import IMPRESSION, StoreError, in_list

CONNECT_TIMEOUT_S = 10
DEADLOCK_RETRIES = 3
AUDIT_LOCK = "recsys.event_store.audit:"
CONTROL_LOCK = "recsys.event_store.control:"
_INSERT_EVENT = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))}) "
                 "ON CONFLICT (event_id) DO NOTHING")
_INSERT_EXPOSURE = (
    "INSERT INTO exposures (request_id, experiment, variant, unit, items, model_version, "
    "created_at_us) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s) "
    "ON CONFLICT (request_id) DO NOTHING")
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s || current_schema()))"


def redact(url: str) -> str:
    """``url`` without its password (in the user part or the query), for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}:***@{host}" if ":" in user else netloc
    query = urlencode([(k, "***" if k == "password" else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class PostgresEventStore(EventStore):
    """:class:`~serving.event_store.base.EventStore` on PostgreSQL (see the module docstring).

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``; a non-default schema with
    ``?options=-csearch_path%3Dname``; keep the password out of it: ``PGPASSWORD`` or
    ``~/.pgpass``). Opening connects once, applies the migrations under an advisory lock, then
    opens a pool of at most ``pool_size`` connections for this process. Thread-safe.
    """

    def __init__(self, url: str, *, audit_secret: str | None = None, pool_size: int = 8) -> None:
        self.location = redact(url)
        # Unlike the SQLite store there is no file to keep a generated secret beside, and every
        # replica must use the same one: it must be given (serving: RECSYS_AUDIT_SECRET).
        self._secret = audit_secret
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"event store {self.location}: {_one_line(exc)}") from None
        kwargs: dict[str, Any] = {"autocommit": True}
        if "application_name" not in params:
            kwargs["application_name"] = "recsys"
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            with psycopg.connect(url, **kwargs) as conn:
                migrate(conn)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to the PostgreSQL event store {self.location}: "
                             f"{_one_line(exc)}") from None
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=kwargs,
                                    configure=_configure, check=ConnectionPool.check_connection,
                                    name="recsys-event-store", open=False)
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"cannot open connections to {self.location}: "
                             f"{_one_line(exc)}") from None

    @contextmanager
    def _transaction(self, snapshot: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection holding one transaction: committed when the block ends (rolled back if
        it raises); ``snapshot``: read-only, repeatable read (one consistent view)."""
        with self._pool.connection() as conn, conn.transaction():
            if snapshot:
                conn.execute(_SNAPSHOT)
            yield conn

    def add_events(self, batch: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        if not batch:
            return 0, 0
        received = now_us()
        rows = sorted((event_row(event, i, received) for i, event in enumerate(batch)),
                      key=lambda row: row[0])
        for attempt in range(DEADLOCK_RETRIES):
            try:
                with self._transaction() as conn, conn.cursor() as cur:
                    cur.executemany(_INSERT_EVENT, rows)
                    inserted = cur.rowcount
                return inserted, len(rows) - inserted
            except pg_errors.DeadlockDetected:
                # not expected (sorted batches lock in one order); the batch is idempotent
                if attempt == DEADLOCK_RETRIES - 1:
                    raise
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                # a CHECK / NOT NULL violation, a NUL character, an integer out of range: the
                # API refuses all of them before here; other callers get a DataError too
                raise DataError(f"event batch of {len(rows)} rejected, nothing written: "
                                f"{_one_line(exc)}") from None
        raise AssertionError("unreachable")

    def add_exposures(self, batch: Sequence[Mapping[str, Any]]) -> int:
        rows = [exposure_row(e) for e in batch]
        if not rows:
            return 0
        with self._transaction() as conn, conn.cursor() as cur:
            cur.executemany(_INSERT_EXPOSURE, rows)
            return int(cur.rowcount)

    def count_events(self, *, user_id: str | None = None, event_type: str | None = None,
                     request_id: str | None = None) -> int:
        where, params = event_filter(user_id=user_id, request_id=request_id, mark="%s",
                                     event_types=None if event_type is None else [event_type])
        with self._transaction(snapshot=True) as conn:
            row = conn.execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()
        return int(row[0]) if row else 0

    def audit_subject(self, user_id: str) -> str:
        if self._secret is None:
            raise StoreError(f"{self.location}: erasure records need the audit secret, the "
                             "same on every replica (set RECSYS_AUDIT_SECRET, or the variable "
                             "privacy.audit_secret_env names)")
        return audit_subject(user_id, self._secret)

    def delete_user(self, user_id: str) -> dict[str, int]:
        subject = self.audit_subject(user_id)
        with self._transaction() as conn:
            # the user's sessions: their events before logging in carry only the session id,
            # and an anonymous request's exposure has the session id as its unit
            sessions = [s for (s,) in conn.execute(
                "SELECT DISTINCT session_id FROM events WHERE user_id = %s "
                "AND session_id IS NOT NULL", (user_id,))]
            events = conn.execute("DELETE FROM events WHERE user_id = %s", (user_id,)).rowcount
            exposures = conn.execute("DELETE FROM exposures WHERE unit = %s",
                                     (user_id,)).rowcount
            if sessions:
                # only anonymous events: a session id shared with another user is theirs too
                events += conn.execute("DELETE FROM events WHERE user_id IS NULL AND "
                                       "session_id = ANY(%s)", (sessions,)).rowcount
                exposures += conn.execute("DELETE FROM exposures WHERE unit = ANY(%s)",
                                          (sessions,)).rowcount
            counts = {"events": events, "exposures": exposures, "sessions": len(sessions)}
            conn.execute(_LOCK, (AUDIT_LOCK,))   # ids in commit order (module docstring)
            conn.execute("INSERT INTO audit (action, subject, counts, at_us) "
                         "VALUES (%s, %s, %s, %s)",
                         ("delete_user", subject, Jsonb(counts), now_us()))
        # Deleted rows stay in the table's dead tuples until (auto)vacuum reclaims them.
        return counts

    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]:
        out: dict[str, VariantCounts] = {}
        with self._transaction(snapshot=True) as conn:
            for variant, units, exposures in conn.execute(
                    "SELECT variant, COUNT(DISTINCT unit), COUNT(*) FROM exposures "
                    "WHERE experiment = %s GROUP BY variant ORDER BY variant", (experiment,)):
                out[variant] = VariantCounts(units=units, exposures=exposures)
            for variant, event_type, n in conn.execute(
                    "SELECT x.variant, e.event_type, COUNT(*) FROM events AS e "
                    "JOIN exposures AS x ON x.request_id = e.request_id "
                    "WHERE e.request_id IS NOT NULL AND x.experiment = %s "
                    "GROUP BY x.variant, e.event_type", (experiment,)):
                out[variant].events[event_type] = n
        return out

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` through a server-side cursor in one snapshot (not all in memory)."""
        with self._transaction(snapshot=True) as conn, \
                conn.cursor(name=f"recsys_{uuid.uuid4().hex}") as cur:
            cur.itersize = 5000
            cur.execute(sql, params)
            yield from cur

    def iter_events(self, *, user_id: str | None = None,
                    event_types: Sequence[str] | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> Iterator[dict[str, Any]]:
        where, params = event_filter(user_id=user_id, event_types=event_types, since=since,
                                     until=until, mark="%s")
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events{where} ORDER BY seq"
        for row in self._stream(sql, params):
            yield stored_event(row)

    def iter_exposures(self, experiment: str) -> Iterator[dict[str, Any]]:
        for request_id, variant, unit, created in self._stream(
                "SELECT request_id, variant, unit, created_at_us FROM exposures "
                "WHERE experiment = %s ORDER BY created_at_us, request_id", (experiment,)):
            yield {"request_id": request_id, "variant": variant, "unit": unit,
                   "created_at": from_micros(created)}

    def audit_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        with self._transaction(snapshot=True) as conn:
            rows = conn.execute("SELECT id, action, subject, counts, at_us FROM audit "
                                "WHERE id > %s ORDER BY id", (after_id,)).fetchall()
        return [{"id": i, "action": action, "subject": subject, "counts": counts,
                 "at": from_micros(at)} for i, action, subject, counts, at in rows]

    def add_control(self, kind: str, subject: str, payload: Mapping[str, Any]) -> int:
        text = check_control(kind, subject, payload)
        with self._transaction() as conn:
            conn.execute(_LOCK, (CONTROL_LOCK,))   # ids in commit order (module docstring)
            row = conn.execute("INSERT INTO control (kind, subject, payload, origin, at_us) "
                               "VALUES (%s, %s, %s::jsonb, %s, %s) RETURNING id",
                               (kind, subject, text, origin(), now_us())).fetchone()
        assert row is not None
        return int(row[0])

    def control_log(self, after_id: int = 0, kind: str | None = None) -> list[ControlRecord]:
        sql = "SELECT id, kind, subject, payload, origin, at_us FROM control WHERE id > %s"
        params: list[Any] = [after_id]
        if kind is not None:
            sql += " AND kind = %s"
            params.append(kind)
        with self._transaction(snapshot=True) as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        return [ControlRecord(i, k, subject, payload, who, from_micros(at))
                for i, k, subject, payload, who, at in rows]

    def event_feed(self, *, after: int = 0, also: Sequence[int] = (),
                   before: int | None = None, limit: int = 10_000) -> list[FeedRow]:
        # seq is taken at insert, not at commit: a row may appear after rows with a larger seq
        # (the caller re-asks for the gaps it saw, ``also``)
        if before is not None:
            sql = feed_sql("seq", "%s", after=None, before=before, also=0, limit=limit)
            params: list[Any] = [before]
        else:
            sql = (feed_sql("seq", "%s", after=after, before=None, also=0, limit=limit)
                   .replace("WHERE seq > %s", "WHERE seq > %s OR seq = ANY(%s)"))
            params = [after, list(also)]
        with self._transaction(snapshot=True) as conn:
            return [FeedRow(*row) for row in conn.execute(sql, params)]

    def export_events(self, out_dir: str | Path,
                      items: pd.DataFrame | None = None) -> ExportSummary:
        canonical = in_list(C.EVENT_TYPES)
        with self._transaction(snapshot=True) as conn:
            counts = conn.execute(
                f"SELECT COUNT(*) FILTER (WHERE event_type = '{IMPRESSION}'), "
                f"COUNT(*) FILTER (WHERE event_type IN ({canonical}) AND user_id IS NULL) "
                "FROM events").fetchone()
            with conn.cursor(name=f"recsys_export_{uuid.uuid4().hex}") as cur:
                cur.itersize = 20_000
                cur.execute(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events "
                            f"WHERE event_type IN ({canonical}) AND user_id IS NOT NULL "
                            "ORDER BY seq")
                rows = list(cur)
        impressions, anonymous = counts if counts else (0, 0)
        return write_export(rows, out_dir, items, impressions, anonymous)

    def close(self) -> None:
        self._pool.close()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: an acknowledged write must be flushed to the WAL at commit."""
    row = conn.execute("SHOW synchronous_commit").fetchone()
    if row is not None and row[0] == "off":
        conn.execute("SET synchronous_commit = on")
