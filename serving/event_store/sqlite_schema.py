"""The SQLite event store's schema and its migrations (``PRAGMA user_version`` = steps applied).

Never edit a released step: add a new one (existing databases have already run the old ones).
The PostgreSQL store creates the same tables (:mod:`.postgres_schema`).
"""

from __future__ import annotations

import sqlite3

from recsys import columns as C
from serving.event_store.schema import STORE_EVENT_TYPES, StoreError, in_list

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: events and exposures. No index on events.request_id: writes are the hot path (each
       # random-keyed index costs ~100 page writes per batch of 100) and the attribution join
       # in experiment_counts scans events once, probing exposures by primary key.
        f"""CREATE TABLE events (
            event_id        TEXT NOT NULL PRIMARY KEY,
            user_id         TEXT,
            session_id      TEXT,
            item_id         TEXT NOT NULL,
            event_type      TEXT NOT NULL CHECK (event_type IN ({in_list(STORE_EVENT_TYPES)})),
            timestamp_us    INTEGER NOT NULL,
            request_id      TEXT,
            position        INTEGER CHECK (position IS NULL OR position >= 0),
            price           REAL CHECK (price IS NULL OR price >= 0),
            quantity        INTEGER NOT NULL DEFAULT 1 CHECK (quantity >= 1),
            device          TEXT CHECK (device IS NULL OR device IN ({in_list(C.DEVICES)})),
            received_at_us  INTEGER NOT NULL,
            CHECK (user_id IS NOT NULL OR session_id IS NOT NULL)
        )""",
        """CREATE TABLE exposures (
            request_id TEXT NOT NULL PRIMARY KEY, experiment TEXT NOT NULL,
            variant TEXT NOT NULL, unit TEXT NOT NULL,
            items TEXT NOT NULL,  -- JSON [{"item_id": ..., "position": 0}, ...]
            model_version TEXT, created_at_us INTEGER NOT NULL
        )""",
        "CREATE INDEX exposures_experiment ON exposures (experiment, variant)",
    ),
    (  # 2: erasure support - audit log, and indexes so delete_user is not a full scan
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, subject TEXT NOT NULL,
            counts TEXT NOT NULL,  -- JSON {"events": n, ...}
            at_us INTEGER NOT NULL
        )""",
        "CREATE INDEX events_user ON events (user_id)",
        "CREATE INDEX exposures_unit ON exposures (unit)",
    ),
    (  # 3: erasure reaches the user's sessions: their anonymous events (before logging in) are
       # found by session id. Partial, so logged-in events (most of the traffic) pay nothing.
        "CREATE INDEX events_anonymous_session ON events (session_id) WHERE user_id IS NULL",
    ),
    (  # 4: the control log replicas poll (serving.replicas): one row per instruction, e.g. a
       # reload of bundle `subject`; payload is JSON whose shape depends on the kind
        """CREATE TABLE control (
            id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, subject TEXT NOT NULL,
            payload TEXT NOT NULL, origin TEXT NOT NULL, at_us INTEGER NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Apply the migrations after the database's ``user_version`` up to ``target`` (default:
    all), in one transaction; returns the version now in effect. Idempotent.

    ``conn`` must be in autocommit mode (``isolation_level=None``). BEGIN IMMEDIATE takes the
    write lock before reading the version, so two processes opening a new file at once do not
    both run step 1.
    """
    target = SCHEMA_VERSION if target is None else target
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"target must be in 0..{SCHEMA_VERSION}, got {target}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StoreError(f"event store schema version {current} is newer than this code "
                             f"supports ({SCHEMA_VERSION}); upgrade the code, not the data")
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
        if target > current:
            conn.execute(f"PRAGMA user_version = {int(target)}")  # transactional, like the DDL
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(current, target)
