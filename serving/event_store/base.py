"""The event store contract (:class:`EventStore`) and what its backends share: the row format
of an event, times as integer microseconds, the canonical export, the result types.

Four tables, the same in every backend:

* ``events`` - what users did: ``event_id`` is the primary key, so a client retrying a batch
  never double-counts (re-inserts are counted as duplicates). ``event_type`` is one of
  :data:`STORE_EVENT_TYPES`: the canonical four plus ``impression`` (an item was shown).
* ``exposures`` - what a request served: experiment, variant, unit, the items with positions
  and the model version; one row per ``request_id``. Events carry the ``request_id`` they came
  from, which attributes them to a variant.
* ``audit`` - what was done to the data (a user erased, with counts).
* ``control`` - instructions for every replica reading the store (a bundle reload, polled by
  :mod:`serving.replicas`; catalog changes, polled by :mod:`serving.live_sync`).

Timestamps are stored as integer microseconds since the Unix epoch, UTC (``*_us`` columns):
exact, sortable, and free of time-zone text. Positions are 0-based in events and exposures.

Event dicts are assumed clean (the API validates requests with pydantic). Keys:
``event_id``, ``item_id``, ``event_type``, ``timestamp`` (aware ``datetime`` or ISO 8601 text;
naive means UTC) and ``user_id`` and/or ``session_id`` are required; ``request_id``,
``position``, ``price``, ``quantity`` (default 1) and ``device`` are optional. An unknown key is
an error. ``received_at`` is set by the store.
"""

from __future__ import annotations

import json
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import pandas as pd

from recsys import columns as C
from recsys.data.io import write_dataset
from recsys.errors import DataError
from serving.event_store.schema import CONTROL_KINDS, STORE_EVENT_TYPES

EVENT_KEYS = frozenset({
    "event_id", C.USER_ID, C.SESSION_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP, "request_id",
    "position", C.PRICE, C.QUANTITY, C.DEVICE,
})
EVENT_COLUMNS = ("event_id", C.USER_ID, C.SESSION_ID, C.ITEM_ID, C.EVENT_TYPE, "timestamp_us",
                 "request_id", "position", C.PRICE, C.QUANTITY, C.DEVICE, "received_at_us")
EXPOSURE_COLUMNS = ("request_id", "experiment", "variant", "unit", "items", "model_version",
                    "created_at_us")
# the columns an export reads, in the order to_canonical expects them
EXPORT_COLUMNS = (C.USER_ID, C.ITEM_ID, "timestamp_us", C.EVENT_TYPE, C.QUANTITY, C.PRICE,
                  C.SESSION_ID, C.DEVICE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


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


def now_us() -> int:
    return (datetime.now(UTC) - _EPOCH) // _US


def event_row(event: Mapping[str, Any], index: int, received_us: int) -> tuple[Any, ...]:
    """One event dict as a row of :data:`EVENT_COLUMNS`; DataError names a bad event."""
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


def exposure_row(e: Mapping[str, Any]) -> tuple[Any, ...]:
    """One exposure (keys as :meth:`EventStore.add_exposure`'s arguments) as a row of
    :data:`EXPOSURE_COLUMNS`; items become JSON ``[{"item_id": ..., "position": 0}, ...]``."""
    created = e.get("created_at")
    return (e["request_id"], e["experiment"], e["variant"], e["unit"],
            json.dumps([{"item_id": item, "position": i} for i, item in enumerate(e["items"])]),
            e.get("model_version"), now_us() if created is None else to_micros(created))


def stored_event(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :data:`EVENT_COLUMNS` as the dict :meth:`EventStore.iter_events` yields."""
    event = dict(zip(EVENT_COLUMNS, row, strict=True))
    event[C.TIMESTAMP] = from_micros(event.pop("timestamp_us"))
    event["received_at"] = from_micros(event.pop("received_at_us"))
    return event


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored rows (``timestamp_us`` and canonical columns) -> canonical events dtypes.

    The same dtypes :func:`recsys.data.validate.validate_events` produces, so the file written
    from it loads like any other dataset.
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


def write_export(rows: Sequence[Sequence[Any]], out_dir: str | Path,
                 items: pd.DataFrame | None, impressions: int, anonymous: int) -> ExportSummary:
    """Rows of :data:`EXPORT_COLUMNS` -> ``events.parquet`` (and the items, when given)."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(EXPORT_COLUMNS))
    events = to_canonical(frame)
    out = Path(out_dir)
    if items is not None:
        write_dataset(out, events, items)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for suffix in (".csv", ".csv.gz"):  # as write_dataset: one events file per directory
            (out / f"events{suffix}").unlink(missing_ok=True)
        events.to_parquet(out / "events.parquet", index=False)
    return ExportSummary(out / "events.parquet", len(events), int(impressions), int(anonymous))


@dataclass
class VariantCounts:
    """One variant of an experiment: distinct units, exposures (requests) and attributed events
    (events whose ``request_id`` is one of the variant's exposures), by event type."""

    units: int = 0
    exposures: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORE_EVENT_TYPES, 0))


class FeedRow(NamedTuple):
    """One stored event as the live state reads it (:meth:`EventStore.event_feed`): ``seq`` is
    the store's insertion order (SQLite rowid, PostgreSQL ``seq``)."""

    seq: int
    event_id: str
    user_id: str | None
    session_id: str | None
    item_id: str
    event_type: str
    timestamp_us: int
    quantity: int
    price: float | None
    received_at_us: int


FEED_COLUMNS = ("event_id", C.USER_ID, C.SESSION_ID, C.ITEM_ID, C.EVENT_TYPE, "timestamp_us",
                C.QUANTITY, C.PRICE, "received_at_us")


def feed_sql(seq: str, mark: str, *, after: int | None, before: int | None, also: int,
             limit: int) -> str:
    """The query of :meth:`EventStore.event_feed` (``seq``: the backend's order column)."""
    select = f"SELECT {seq}, {', '.join(FEED_COLUMNS)} FROM events"
    if before is not None:
        return f"{select} WHERE {seq} < {mark} ORDER BY {seq} DESC LIMIT {int(limit)}"
    where = f"{seq} > {mark}"
    if also:
        where += f" OR {seq} IN ({', '.join([mark] * also)})"
    return f"{select} WHERE {where} ORDER BY {seq} LIMIT {int(limit)}"


@dataclass(frozen=True)
class ControlRecord:
    """One instruction of the control log: ``kind`` (one of :data:`CONTROL_KINDS`), what it is
    about (``subject``: a bundle name for a reload), a JSON ``payload`` whose shape depends on
    the kind, who wrote it (``origin``: host and pid) and when."""

    id: int
    kind: str
    subject: str
    payload: dict[str, Any]
    origin: str
    at: datetime


def origin() -> str:
    """``host:pid`` of this process, for the control log's ``origin``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_control(kind: str, subject: str, payload: Mapping[str, Any]) -> str:
    """The JSON of a control record's payload; ValueError for an unknown kind."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"unknown control kind {kind!r} (expected one of "
                         f"{', '.join(CONTROL_KINDS)})")
    if not subject:
        raise ValueError("a control record needs a subject")
    return json.dumps(dict(payload), sort_keys=True)


class EventStore(ABC):
    """What the API needs from an event store; every write is durable when the call returns.

    Backends: :class:`~serving.event_store.sqlite.SQLiteEventStore` (one file; the default)
    and :class:`~serving.event_store.postgres.PostgresEventStore` (one server shared by any
    number of replicas); :func:`serving.event_store.open_store` picks one by location.
    """

    location: str   # the file, or the URL without its password (for messages)

    @abstractmethod
    def add_events(self, batch: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert a batch atomically (all or nothing); returns ``(inserted, duplicates)``,
        duplicates being events whose ``event_id`` is already stored (or repeated in the batch).
        Raises DataError, with nothing written, if any event is invalid."""

    def add_exposure(self, request_id: str, experiment: str, variant: str, unit: str,
                     items: Sequence[str], model_version: str | None = None,
                     created_at: datetime | None = None) -> bool:
        """Record what a request served (``items`` in rank order, position = index); returns
        False if ``request_id`` was already recorded (the first record is kept)."""
        return self.add_exposures([{
            "request_id": request_id, "experiment": experiment, "variant": variant,
            "unit": unit, "items": items, "model_version": model_version,
            "created_at": created_at}]) == 1

    @abstractmethod
    def add_exposures(self, batch: Sequence[Mapping[str, Any]]) -> int:
        """Record many exposures (keys as :meth:`add_exposure`'s arguments) in one
        transaction; returns rows inserted."""

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
    def iter_exposures(self, experiment: str) -> Iterator[dict[str, Any]]:
        """The experiment's exposures (``request_id``, ``variant``, ``unit``, ``created_at``
        as an aware datetime), oldest first (what the readout reads)."""

    @abstractmethod
    def audit_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Audit records with an id above ``after_id``, oldest first. Ids grow in commit order,
        so a reader that remembers the last id it saw never misses a record."""

    @abstractmethod
    def add_control(self, kind: str, subject: str, payload: Mapping[str, Any]) -> int:
        """Append an instruction for every replica to the control log; returns its id."""

    @abstractmethod
    def control_log(self, after_id: int = 0, kind: str | None = None) -> list[ControlRecord]:
        """Control records with an id above ``after_id`` (of one kind, if given), oldest first;
        ids grow in commit order, as in :meth:`audit_log`."""

    @abstractmethod
    def event_feed(self, *, after: int = 0, also: Sequence[int] = (),
                   before: int | None = None, limit: int = 10_000) -> list[FeedRow]:
        """Events in insertion order, for the live state (:mod:`serving.live_sync`): those
        after ``after`` and those whose order is in ``also`` (gaps noticed earlier), oldest
        first; or, with ``before``, those before it, newest first (a rebuild reads back).
        At most ``limit`` rows."""

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


def event_filter(*, user_id: str | None = None, request_id: str | None = None,
                 event_types: Sequence[str] | None = None, since: datetime | None = None,
                 until: datetime | None = None, mark: str = "?"
                 ) -> tuple[str, list[str | int]]:
    """A `` WHERE ...`` clause and its parameters for the filters that are given; ``mark`` is
    the backend's placeholder (``?`` for SQLite, ``%s`` for psycopg)."""
    clauses: list[tuple[str, list[str | int]]] = [
        (f"{col} = {mark}", [v]) for col, v in (("user_id", user_id), ("request_id", request_id))
        if v is not None]
    if event_types is not None:
        marks = ", ".join([mark] * len(event_types))
        clauses.append((f"event_type IN ({marks})", list(event_types)))
    if since is not None:
        clauses.append((f"timestamp_us >= {mark}", [to_micros(since)]))
    if until is not None:
        clauses.append((f"timestamp_us < {mark}", [to_micros(until)]))
    params = [p for _, ps in clauses for p in ps]
    return (" WHERE " + " AND ".join(c for c, _ in clauses) if clauses else ""), params
