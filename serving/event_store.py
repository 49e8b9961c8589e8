"""Durable store for served events and experiment exposures, behind a small interface.

:class:`EventStore` is the contract the API codes against; :class:`SQLiteEventStore` implements
it on one SQLite file (a PostgreSQL store can implement the same methods later). Three tables:

* ``events`` - what users did: ``event_id`` is the primary key, so a client retrying a batch
  never double-counts (re-inserts are counted as duplicates). ``event_type`` is one of
  :data:`STORE_EVENT_TYPES`: the canonical four plus ``impression`` (an item was shown).
* ``exposures`` - what a request served: experiment, variant, unit, the items with positions
  and the model version; one row per ``request_id``. Events carry the ``request_id`` they came
  from, which attributes them to a variant.
* ``audit`` - what was done to the data (a user erased, with counts).

Timestamps are stored as integer microseconds since the Unix epoch, UTC (``*_us`` columns):
exact, sortable, and free of time-zone text. Positions are 0-based in events and exposures.

Event dicts are assumed clean (the API validates requests with pydantic). Keys:
``event_id``, ``item_id``, ``event_type``, ``timestamp`` (aware ``datetime`` or ISO 8601 text;
naive means UTC) and ``user_id`` and/or ``session_id`` are required; ``request_id``,
``position``, ``price``, ``quantity`` (default 1) and ``device`` are optional. An unknown key is
an error. ``received_at`` is set by the store.

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
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pandas as pd

from recsys import columns as C
from recsys.data.io import write_dataset
from recsys.errors import DataError
from serving.audit import audit_subject, load_or_create_secret
from serving.store_schema import (
    IMPRESSION,
    MIGRATIONS,  # noqa: F401 - re-exported (tests, tools)
    SCHEMA_VERSION,  # noqa: F401
    STORE_EVENT_TYPES,
    StoreError,
    in_list,
    migrate,
)

EVENT_KEYS = frozenset({
    "event_id", C.USER_ID, C.SESSION_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP, "request_id",
    "position", C.PRICE, C.QUANTITY, C.DEVICE,
})
BUSY_TIMEOUT_S = 10.0
WAL_AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB with 4 KiB pages
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # truncate a WAL left larger than this after a burst
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)



_EVENT_COLUMNS = ("event_id", C.USER_ID, C.SESSION_ID, C.ITEM_ID, C.EVENT_TYPE, "timestamp_us",
                  "request_id", "position", C.PRICE, C.QUANTITY, C.DEVICE, "received_at_us")
# Only a repeated event_id is skipped. INSERT OR IGNORE would also silently skip rows that break
# a CHECK or NOT NULL constraint, and count them as "duplicates".
_INSERT_EVENT = (f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))}) "
                 "ON CONFLICT (event_id) DO NOTHING")


def to_micros(value: datetime | str) -> int:
    """Microseconds since the epoch, UTC. Text is ISO 8601; naive times are taken as UTC."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(dt, datetime):
        raise TypeError(f"expected a datetime or ISO 8601 text, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def from_micros(us: int) -> datetime:
    """Inverse of :func:`to_micros`: an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def _now_us() -> int:
    return (datetime.now(UTC) - _EPOCH) // _US


def _event_row(event: Mapping[str, Any], index: int, received_us: int) -> tuple[Any, ...]:
    unknown = event.keys() - EVENT_KEYS
    if unknown:
        raise DataError(f"event {index}: unknown key(s) {sorted(unknown)} "
                        f"(known: {', '.join(sorted(EVENT_KEYS))})")
    try:
        ts = to_micros(event[C.TIMESTAMP])
        quantity = event.get(C.QUANTITY)
        return (event["event_id"], event.get(C.USER_ID), event.get(C.SESSION_ID),
                event[C.ITEM_ID], event[C.EVENT_TYPE], ts, event.get("request_id"),
                event.get("position"), event.get(C.PRICE), 1 if quantity is None else quantity,
                event.get(C.DEVICE), received_us)
    except KeyError as exc:
        raise DataError(f"event {index}: missing required key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"event {index}: bad timestamp {event.get(C.TIMESTAMP)!r} "
                        f"({exc})") from None


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored rows (``timestamp_us`` and canonical columns) -> canonical events dtypes.

    The same dtypes :func:`recsys.data.validate.validate_events` produces, so the file written
    from it loads like any other dataset. Backend-independent: a PostgreSQL store reuses it.
    """
    out = pd.DataFrame({
        C.USER_ID: frame[C.USER_ID].astype(str).astype("category"),
        C.ITEM_ID: frame[C.ITEM_ID].astype(str).astype("category"),
        C.TIMESTAMP: pd.to_datetime(frame["timestamp_us"].astype("int64"), unit="us", utc=True)
        .astype("datetime64[ns, UTC]"),
        C.EVENT_TYPE: pd.Categorical(frame[C.EVENT_TYPE], categories=list(C.EVENT_TYPES)),
        C.QUANTITY: frame[C.QUANTITY].astype("int32"),
        C.PRICE: frame[C.PRICE].astype("float64"),
        C.SESSION_ID: frame[C.SESSION_ID].astype("string").astype("category"),
        C.DEVICE: pd.Categorical(frame[C.DEVICE], categories=list(C.DEVICES)),
    })
    return out.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class ExportSummary:
    """What :meth:`EventStore.export_events` wrote and what it left out, and why."""

    path: Path
    events: int
    skipped_impressions: int
    skipped_anonymous: int


@dataclass
class VariantCounts:
    """One variant of an experiment: distinct units, exposures (requests) and attributed events
    (events whose ``request_id`` is one of the variant's exposures), by event type."""

    units: int = 0
    exposures: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORE_EVENT_TYPES, 0))


_INSERT_EXPOSURE = (
    "INSERT INTO exposures (request_id, experiment, variant, unit, items, model_version, "
    "created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")


class EventStore(ABC):
    """What the API needs from an event store; every write is durable when the call returns."""

    @abstractmethod
    def add_events(self, batch: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert a batch atomically (all or nothing); returns ``(inserted, duplicates)``,
        duplicates being events whose ``event_id`` is already stored (or repeated in the batch).
        Raises DataError, with nothing written, if any event is invalid."""

    @abstractmethod
    def add_exposure(self, request_id: str, experiment: str, variant: str, unit: str,
                     items: Sequence[str], model_version: str | None = None,
                     created_at: datetime | None = None) -> bool:
        """Record what a request served (``items`` in rank order, position = index); returns
        False if ``request_id`` was already recorded (the first record is kept)."""

    def add_exposures(self, batch: Sequence[Mapping[str, Any]]) -> int:
        """Record many exposures (keys as :meth:`add_exposure`'s arguments); returns rows
        inserted. Stores override this to write the batch in one transaction."""
        return sum(self.add_exposure(**dict(e)) for e in batch)

    @abstractmethod
    def count_events(self, *, user_id: str | None = None, event_type: str | None = None,
                     request_id: str | None = None) -> int:
        """Number of stored events matching every given filter."""

    @abstractmethod
    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user's events and exposures (unit == ``user_id``), and those of the sessions
        the user's events name (their anonymous events, exposures with the session as unit),
        and write an audit record (:meth:`audit_subject`), in one transaction; returns
        ``{"events": n, "exposures": m, "sessions": s}``."""

    @abstractmethod
    def audit_subject(self, user_id: str) -> str:
        """How ``user_id`` appears in the audit log (a keyed hash, :mod:`serving.audit`)."""

    @abstractmethod
    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]:
        """Per variant: distinct units, exposures, and events attributed through request_id."""

    @abstractmethod
    def iter_events(self, *, user_id: str | None = None,
                    event_types: Sequence[str] | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Stored events as dicts (``timestamp``/``received_at`` as aware datetimes), in
        insertion order, from one consistent snapshot; ``since`` inclusive, ``until`` exclusive."""

    @abstractmethod
    def audit_log(self) -> list[dict[str, Any]]:
        """Audit records, oldest first."""

    @abstractmethod
    def export_events(self, out_dir: str | Path,
                      items: pd.DataFrame | None = None) -> ExportSummary:
        """Write canonical ``events.parquet`` (and ``items.parquet`` when ``items`` is given).

        Only view/click/add_to_cart/purchase are canonical events; impressions are exposure
        data, not interactions (as "views" they would turn every item shown into a weak
        positive), so they are left out, as are anonymous events (no user id). The catalog is
        not in the store: without ``items``, put an ``items`` file beside ``events.parquet``
        before ``recsys validate``/training reads the directory.
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


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
        received = _now_us()
        rows = [_event_row(event, i, received) for i, event in enumerate(batch)]
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

    def add_exposure(self, request_id: str, experiment: str, variant: str, unit: str,
                     items: Sequence[str], model_version: str | None = None,
                     created_at: datetime | None = None) -> bool:
        payload = json.dumps([{"item_id": item, "position": i} for i, item in enumerate(items)])
        created = _now_us() if created_at is None else to_micros(created_at)
        with self._transaction() as conn:
            cur = conn.execute(_INSERT_EXPOSURE, (request_id, experiment, variant, unit, payload,
                                                  model_version, created))
        return cur.rowcount == 1

    def add_exposures(self, batch: Sequence[Mapping[str, Any]]) -> int:
        rows = [(e["request_id"], e["experiment"], e["variant"], e["unit"],
                 json.dumps([{"item_id": item, "position": i}
                             for i, item in enumerate(e["items"])]),
                 e.get("model_version"),
                 _now_us() if e.get("created_at") is None else to_micros(e["created_at"]))
                for e in batch]
        if not rows:
            return 0
        with self._transaction() as conn:
            return int(conn.executemany(_INSERT_EXPOSURE, rows).rowcount)

    def count_events(self, *, user_id: str | None = None, event_type: str | None = None,
                     request_id: str | None = None) -> int:
        where, params = _event_filter(user_id=user_id, request_id=request_id,
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
                         ("delete_user", subject, json.dumps(counts), _now_us()))
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
        where, params = _event_filter(user_id=user_id, event_types=event_types, since=since,
                                      until=until)
        sql = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events{where} ORDER BY rowid"
        with self._snapshot() as conn:
            for row in conn.execute(sql, params):
                event = dict(zip(_EVENT_COLUMNS, row, strict=True))
                event[C.TIMESTAMP] = from_micros(event.pop("timestamp_us"))
                event["received_at"] = from_micros(event.pop("received_at_us"))
                yield event

    def audit_log(self) -> list[dict[str, Any]]:
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT id, action, subject, counts, at_us FROM audit ORDER BY id").fetchall()
        return [{"id": i, "action": action, "subject": subject, "counts": json.loads(counts),
                 "at": from_micros(at)} for i, action, subject, counts, at in rows]

    def export_events(self, out_dir: str | Path,
                      items: pd.DataFrame | None = None) -> ExportSummary:
        canonical = in_list(C.EVENT_TYPES)
        with self._snapshot() as conn:
            impressions, anonymous = conn.execute(
                f"SELECT COALESCE(SUM(event_type = '{IMPRESSION}'), 0), "
                f"COALESCE(SUM(event_type IN ({canonical}) AND user_id IS NULL), 0) "
                "FROM events").fetchone()
            frame = pd.read_sql_query(
                f"SELECT user_id, item_id, timestamp_us, event_type, quantity, price, "
                f"session_id, device FROM events "
                f"WHERE event_type IN ({canonical}) AND user_id IS NOT NULL ORDER BY rowid",
                conn)
        events = to_canonical(frame)
        out = Path(out_dir)
        if items is not None:
            write_dataset(out, events, items)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for suffix in (".csv", ".csv.gz"):  # as write_dataset: one events file per directory
                (out / f"events{suffix}").unlink(missing_ok=True)
            events.to_parquet(out / "events.parquet", index=False)
        return ExportSummary(out / "events.parquet", len(events), int(impressions),
                             int(anonymous))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _event_filter(*, user_id: str | None = None, request_id: str | None = None,
                  event_types: Sequence[str] | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> tuple[str, list[str | int]]:
    """A `` WHERE ...`` clause and its parameters for the filters that are given."""
    clauses: list[tuple[str, list[str | int]]] = [
        (f"{col} = ?", [v]) for col, v in (("user_id", user_id), ("request_id", request_id))
        if v is not None]
    if event_types is not None:
        clauses.append((f"event_type IN ({', '.join('?' * len(event_types))})", list(event_types)))
    if since is not None:
        clauses.append(("timestamp_us >= ?", [to_micros(since)]))
    if until is not None:
        clauses.append(("timestamp_us < ?", [to_micros(until)]))
    params = [p for _, ps in clauses for p in ps]
    return (" WHERE " + " AND ".join(c for c, _ in clauses) if clauses else ""), params
