"""The PostgreSQL event store's schema and its migrations (table ``recsys_schema`` holds the
number of steps applied).

The tables are those of the SQLite store (:mod:`.sqlite_schema`, whose step 4 this schema's
step 1 equals), in PostgreSQL types: ``seq`` gives events an insertion order (SQLite's rowid),
exposure items and audit counts are ``jsonb``. Never edit a released step: add a new one.

Several replicas may start at once against a new database: :func:`migrate` takes a
transaction-scoped advisory lock (one per schema) before reading the version, so exactly one
of them creates the tables and the others find them done. DDL is transactional in PostgreSQL:
a step that fails leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from recsys import columns as C
from serving.event_store.schema import STORE_EVENT_TYPES, StoreError, in_list

# pg_advisory_xact_lock(key): key = hashtext(LOCK_PREFIX || schema); the same key serialises
# the audit and control writers (postgres.py), each under its own prefix
MIGRATION_LOCK = "recsys.event_store.migrate:"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: everything the SQLite store has after its step 4
        f"""CREATE TABLE events (
            event_id        TEXT NOT NULL PRIMARY KEY,
            seq             BIGINT GENERATED ALWAYS AS IDENTITY,
            user_id         TEXT,
            session_id      TEXT,
            item_id         TEXT NOT NULL,
            event_type      TEXT NOT NULL CHECK (event_type IN ({in_list(STORE_EVENT_TYPES)})),
            timestamp_us    BIGINT NOT NULL,
            request_id      TEXT,
            position        INTEGER CHECK (position IS NULL OR position >= 0),
            price           DOUBLE PRECISION CHECK (price IS NULL OR price >= 0),
            quantity        INTEGER NOT NULL DEFAULT 1 CHECK (quantity >= 1),
            device          TEXT CHECK (device IS NULL OR device IN ({in_list(C.DEVICES)})),
            received_at_us  BIGINT NOT NULL,
            CHECK (user_id IS NOT NULL OR session_id IS NOT NULL)
        )""",
        # appended in order: cheap to maintain, and exports stream by it without a sort
        "CREATE INDEX events_seq ON events (seq)",
        "CREATE INDEX events_user ON events (user_id)",
        "CREATE INDEX events_anonymous_session ON events (session_id) WHERE user_id IS NULL",
        """CREATE TABLE exposures (
            request_id TEXT NOT NULL PRIMARY KEY, experiment TEXT NOT NULL,
            variant TEXT NOT NULL, unit TEXT NOT NULL,
            items JSONB NOT NULL,  -- [{"item_id": ..., "position": 0}, ...]
            model_version TEXT, created_at_us BIGINT NOT NULL
        )""",
        "CREATE INDEX exposures_experiment ON exposures (experiment, variant)",
        "CREATE INDEX exposures_unit ON exposures (unit)",
        """CREATE TABLE audit (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, action TEXT NOT NULL,
            subject TEXT NOT NULL, counts JSONB NOT NULL, at_us BIGINT NOT NULL
        )""",
        """CREATE TABLE control (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL,
            subject TEXT NOT NULL, payload JSONB NOT NULL, origin TEXT NOT NULL,
            at_us BIGINT NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: Any) -> int:
    """The version recorded in the current schema (0: none yet)."""
    exists = conn.execute("SELECT to_regclass('recsys_schema')").fetchone()[0]
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM recsys_schema").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: Any, target: int | None = None) -> int:
    """Apply the steps after the schema's version up to ``target`` (default: all) in one
    transaction, under an advisory lock; returns the version now in effect. Idempotent.

    ``conn`` is a psycopg connection outside a transaction.
    """
    target = SCHEMA_VERSION if target is None else target
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"target must be in 0..{SCHEMA_VERSION}, got {target}")
    with conn.transaction():
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        if schema is None:
            path = conn.execute("SHOW search_path").fetchone()[0]
            raise StoreError(f"no schema to create the tables in: search_path is {path!r} and "
                             "none of it exists (CREATE SCHEMA it first)")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (MIGRATION_LOCK + schema,))
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise StoreError(f"event store schema version {current} is newer than this code "
                             f"supports ({SCHEMA_VERSION}); upgrade the code, not the data")
        if current == 0:
            conn.execute("CREATE TABLE IF NOT EXISTS recsys_schema (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO recsys_schema (version) VALUES (0)")
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
        if target > current:
            conn.execute("UPDATE recsys_schema SET version = %s", (target,))
    return max(current, target)
