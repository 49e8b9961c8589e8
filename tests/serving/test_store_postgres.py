"""What only the PostgreSQL store does: commits flushed even where the server default is not,
its versioned migrations (refusing a newer schema), one-line errors without the password, the
audit secret it requires, and text PostgreSQL cannot hold."""

from __future__ import annotations

import psycopg
import pytest

from recsys.errors import DataError
from serving.event_store import StoreError, open_store
from serving.event_store.postgres import PostgresEventStore, redact
from serving.event_store.postgres_schema import SCHEMA_VERSION, migrate, schema_version
from tests.serving.conftest import with_schema


def test_commits_are_flushed_even_if_the_session_default_is_off(postgres_url: str) -> None:
    """A session started with synchronous_commit=off (a server or role default) would
    acknowledge commits before they are on disk: the store sets it back to on."""
    url = postgres_url.replace("options=", "options=-csynchronous_commit%3Doff%20")
    with psycopg.connect(url) as probe:
        assert probe.execute("SHOW synchronous_commit").fetchone() == ("off",)
    with open_store(url) as store:
        assert isinstance(store, PostgresEventStore)
        with store._pool.connection() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)


def test_migrations_are_versioned_and_idempotent(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert migrate(conn, target=0) == 0
        assert schema_version(conn) == 0
    with open_store(postgres_url) as store:
        assert store.count_events() == 0
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        assert migrate(conn) == SCHEMA_VERSION          # nothing left to do
        conn.execute("UPDATE recsys_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this code"):
        open_store(postgres_url)


def test_missing_schema_is_one_clear_line(postgres_server: str) -> None:
    with pytest.raises(StoreError, match="no schema to create the tables in.*CREATE SCHEMA"):
        open_store(with_schema(postgres_server, "no_such_schema_here"))


def test_unreachable_server_is_one_line_without_the_password() -> None:
    url = "postgresql://recsys:hunter2@127.0.0.1:1/shop"
    with pytest.raises(StoreError) as info:
        open_store(url)
    message = str(info.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("cannot connect to the PostgreSQL event store "
                              "postgresql://recsys:***@127.0.0.1:1/shop")


def test_bad_url_names_the_problem() -> None:
    with pytest.raises(StoreError, match="invalid integer value \"abc\".*port"):
        open_store("postgresql://127.0.0.1:abc/shop")


def test_redact() -> None:
    assert redact("postgresql://u:pw@h:5/db?options=x&password=pw2") == \
        "postgresql://u:***@h:5/db?options=x&password=***"
    assert redact("postgres://h/db") == "postgres://h/db"


def test_erasure_needs_the_shared_secret(postgres_url: str) -> None:
    """No file to keep a generated secret beside, and every replica must use the same one."""
    with open_store(postgres_url) as store:
        store.add_events([{"event_id": "e", "user_id": "u", "item_id": "i",
                           "event_type": "view", "timestamp": "2026-01-01T00:00:00Z"}])
        with pytest.raises(StoreError, match="RECSYS_AUDIT_SECRET"):
            store.delete_user("u")
        assert store.count_events() == 1 and store.audit_log() == []


def test_text_postgresql_cannot_hold_is_a_data_error(postgres_url: str) -> None:
    with open_store(postgres_url) as store, pytest.raises(DataError, match="NUL"):
        store.add_events([{"event_id": "a\x00b", "user_id": "u", "item_id": "i",
                           "event_type": "view", "timestamp": "2026-01-01T00:00:00Z"}])
