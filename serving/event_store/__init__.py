"""Durable store for served events, experiment exposures, the erasure audit log and the
replicas' control log, behind one interface (:class:`EventStore`) with two backends:

* :class:`SQLiteEventStore` - one file (WAL, ``synchronous=FULL``); the default. Several
  processes of one host may share it.
* :class:`PostgresEventStore` - a PostgreSQL server (psycopg 3, a connection pool per process);
  any number of replicas on any number of hosts share it.

:func:`open_store` picks one from the configured location: a ``postgresql://`` (or
``postgres://``) URL is PostgreSQL, anything else a SQLite file path.

Example::

    with open_store("postgresql://recsys@db.internal/shop") as store:
        store.add_events([{"event_id": "e1", "user_id": "u1", "item_id": "i9",
                           "event_type": "click", "timestamp": "2024-06-01T12:00:00Z"}])
        # -> (1, 0); the same call again -> (0, 1)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.event_store.base import (
    EVENT_KEYS,
    ControlRecord,
    EventStore,
    ExportSummary,
    FeedRow,
    VariantCounts,
    from_micros,
    to_canonical,
    to_micros,
)
from serving.event_store.schema import (
    CATALOG,
    CHAMPION,
    CONTROL_KINDS,
    IMPRESSION,
    RELOAD,
    STORE_EVENT_TYPES,
    StoreError,
)
from serving.event_store.sqlite import SQLiteEventStore
from serving.event_store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, migrate

if TYPE_CHECKING:
    from serving.event_store.postgres import PostgresEventStore

POSTGRES_SCHEMES = ("postgresql", "postgres")

__all__ = [
    "CATALOG", "CHAMPION", "CONTROL_KINDS", "EVENT_KEYS", "IMPRESSION", "MIGRATIONS", "RELOAD",
    "SCHEMA_VERSION", "STORE_EVENT_TYPES", "ControlRecord", "EventStore", "ExportSummary",
    "FeedRow", "PostgresEventStore",
    "SQLiteEventStore", "StoreError", "VariantCounts", "from_micros", "is_postgres_url",
    "migrate", "open_store", "to_canonical", "to_micros",
]


def is_postgres_url(location: str | Path) -> bool:
    """True for ``postgresql://...`` / ``postgres://...`` (a Path is always a file)."""
    return isinstance(location, str) and location.split("://", 1)[0].lower() in POSTGRES_SCHEMES \
        and "://" in location


def open_store(location: str | Path, *, audit_secret: str | None = None,
               pool_size: int = 8) -> EventStore:
    """The store at ``location``: a PostgreSQL URL or a SQLite file (created if missing, with
    its directory). ``pool_size`` caps the connections a PostgreSQL store opens per process.
    Raises StoreError (one line, no password) when it cannot be opened."""
    if is_postgres_url(location):
        from serving.event_store.postgres import PostgresEventStore

        return PostgresEventStore(str(location), audit_secret=audit_secret, pool_size=pool_size)
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteEventStore(path, audit_secret=audit_secret)


def __getattr__(name: str) -> Any:
    if name == "PostgresEventStore":   # psycopg is imported only when PostgreSQL is used
        from serving.event_store.postgres import PostgresEventStore

        return PostgresEventStore
    raise AttributeError(f"module 'serving.event_store' has no attribute {name!r}")
