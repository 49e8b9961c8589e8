"""What only the SQLite store does: its durability pragmas, migrating a file written by an
older version, refusing a newer one, and the audit secret created once beside the file."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from serving.event_store import SCHEMA_VERSION, SQLiteEventStore, StoreError, migrate


def test_durability_settings(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "events.db") as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_old_database_is_migrated_on_open(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO events (event_id, user_id, item_id, event_type, timestamp_us, "
                 "received_at_us) VALUES ('old', 'u1', 'i1', 'view', 0, 0)")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "audit" not in tables and "control" not in tables
    conn.close()

    with SQLiteEventStore(db, audit_secret="s") as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.count_events() == 1
        assert store.delete_user("u1") == {"events": 1, "exposures": 0, "sessions": 0}
        assert store.control_log() == []
    with SQLiteEventStore(db) as store:  # re-open: nothing to do, nothing fails
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert len(store.audit_log()) == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this code"):
        SQLiteEventStore(db)


def test_secret_is_created_once_beside_the_file(tmp_path: Path) -> None:
    """Without a configured secret, the first erasure creates one (mode 0600) that every
    worker and restart of this host shares; a store that is only read never creates it."""
    db = tmp_path / "c.db"
    with SQLiteEventStore(db) as c:
        assert not (tmp_path / "c.db.secret").exists()
        first = c.audit_subject("u1")
    secret = tmp_path / "c.db.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with SQLiteEventStore(db) as again:                        # a restart, another worker
        assert again.audit_subject("u1") == first
