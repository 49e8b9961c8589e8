"""The SQLite event store: idempotent, atomic, durable batches; schema migrations; erasure with
an audit trail; export to the canonical events format; experiment counts."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys import columns as C
from recsys.data.validate import load_dataset, validate_events
from recsys.errors import DataError
from serving.event_store import (
    SCHEMA_VERSION,
    SQLiteEventStore,
    StoreError,
    migrate,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def event(event_id: str, user_id: str | None = "u1", event_type: str = "click",
          **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user_id, "item_id": extra.pop("item_id", "i1"),
            "event_type": event_type, "timestamp": extra.pop("timestamp", T0), **extra}


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteEventStore(tmp_path / "events.db") as s:
        yield s


def test_durability_settings(store: SQLiteEventStore) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reinsert_is_idempotent_and_counts_duplicates(store: SQLiteEventStore) -> None:
    batch = [event(f"e{i}") for i in range(5)]
    assert store.add_events(batch) == (5, 0)
    assert store.add_events(batch) == (0, 5)
    assert store.add_events([event("e4"), event("e5"), event("e5")]) == (1, 2)  # in-batch too
    assert store.count_events() == 6
    assert store.add_events([]) == (0, 0)


def test_batch_is_atomic(store: SQLiteEventStore) -> None:
    """A CHECK failure mid-batch rolls back the rows before it (INSERT OR IGNORE would have
    skipped the bad row silently and kept the rest)."""
    batch = [event("e1"), event("e2"), event("e3", event_type="hover"), event("e4")]
    with pytest.raises(DataError, match="rejected, nothing written.*CHECK constraint"):
        store.add_events(batch)
    assert store.count_events() == 0
    assert store.add_events([batch[0], batch[1], batch[3]]) == (3, 0)  # not "duplicates"


@pytest.mark.parametrize(("bad", "message"), [
    ({"event_id": "x", "user_id": "u", "item_id": "i", "event_type": "view"},
     "missing required key 'timestamp'"),
    ({**event("x"), "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    (event("x", timestamp="yesterday"), "bad timestamp 'yesterday'"),
    (event("x", user_id=None), "CHECK constraint"),  # neither user nor session id
    (event("x", quantity=0), "CHECK constraint"),
])
def test_bad_event_is_a_data_error(store: SQLiteEventStore, bad: dict[str, Any],
                                   message: str) -> None:
    with pytest.raises(DataError, match=message):
        store.add_events([event("ok"), bad])
    assert store.count_events() == 0


CHILD = """
import sys, time
from datetime import datetime, timezone
from serving.event_store import SQLiteEventStore
store = SQLiteEventStore(sys.argv[1])
t = datetime(2024, 6, 1, tzinfo=timezone.utc)
batch = [{"event_id": f"k{i}", "user_id": "u1", "item_id": f"i{i}", "event_type": "view",
          "timestamp": t} for i in range(100)]
store.add_events(batch)
print("ACK", flush=True)
time.sleep(60)
"""


def test_acknowledged_batch_survives_sigkill(tmp_path: Path) -> None:
    """The child prints ACK only after add_events returns and is SIGKILLed right after, without
    closing the store: the batch must be there on reopen. (This proves ack-after-commit across
    a process crash; surviving power loss is what synchronous=FULL adds, which a unit test
    cannot simulate.)"""
    db = tmp_path / "events.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ACK"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with SQLiteEventStore(db) as store:
        assert store.count_events() == 100


def test_old_database_is_migrated_on_open(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO events (event_id, user_id, item_id, event_type, timestamp_us, "
                 "received_at_us) VALUES ('old', 'u1', 'i1', 'view', 0, 0)")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "audit" not in tables
    conn.close()

    with SQLiteEventStore(db) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.count_events() == 1
        assert store.delete_user("u1") == {"events": 1, "exposures": 0, "sessions": 0}
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


def test_delete_user_erases_and_audits(store: SQLiteEventStore) -> None:
    store.add_events([event("a1", "alice"), event("a2", "alice"), event("b1", "bob")])
    assert store.add_exposure("r1", "exp1", "control", "alice", ["i1", "i2"])
    assert store.add_exposure("r2", "exp1", "treatment", "bob", ["i3"])

    assert store.delete_user("alice") == {"events": 2, "exposures": 1, "sessions": 0}
    assert store.count_events(user_id="alice") == 0
    assert store.count_events(user_id="bob") == 1
    assert set(store.experiment_counts("exp1")) == {"treatment"}
    [record] = store.audit_log()
    assert record["action"] == "delete_user"
    assert record["counts"] == {"events": 2, "exposures": 1, "sessions": 0}
    assert record["subject"] == store.audit_subject("alice") and "alice" not in record["subject"]


def test_erasure_covers_the_users_sessions(store: SQLiteEventStore) -> None:
    """Before logging in, a shopper's events carry only the session id, and an anonymous
    request's exposure has the session as its unit: both go with the user."""
    store.add_events([
        event("anon-1", None, session_id="s-alice"),          # before logging in
        event("anon-2", None, session_id="s-alice", event_type="view"),
        event("in-1", "alice", session_id="s-alice"),         # logged in: names the session
        event("in-2", "alice", session_id="s-alice-2"),
        event("anon-other", None, session_id="s-carol"),
        event("bob-shared", "bob", session_id="s-alice"),     # another user's event: stays
    ])
    assert store.add_exposure("r1", "exp1", "control", "s-alice", ["i1"])
    assert store.add_exposure("r2", "exp1", "control", "s-alice-2", ["i1"])
    assert store.add_exposure("r3", "exp1", "control", "s-carol", ["i1"])
    counts = store.delete_user("alice")
    assert counts == {"events": 4, "exposures": 2, "sessions": 2}
    left = {e["event_id"] for e in store.iter_events()}
    assert left == {"anon-other", "bob-shared"}
    assert store.experiment_counts("exp1")["control"].exposures == 1


def test_audit_subject_is_keyed(tmp_path: Path) -> None:
    """A plain hash of a guessable id is reversed by hashing candidates; the HMAC needs the
    server secret, which comes from the settings or is created once beside the store."""
    import hashlib
    import stat

    with SQLiteEventStore(tmp_path / "a.db", audit_secret="s1") as a, \
            SQLiteEventStore(tmp_path / "b.db", audit_secret="s2") as b:
        assert a.audit_subject("u000042") != b.audit_subject("u000042")
        assert hashlib.sha256(b"u000042").hexdigest() not in a.audit_subject("u000042")
    db = tmp_path / "c.db"
    with SQLiteEventStore(db) as c:
        assert not (tmp_path / "c.db.secret").exists()       # only created when needed
        first = c.audit_subject("u1")
    secret = tmp_path / "c.db.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with SQLiteEventStore(db) as again:                        # a restart, another worker
        assert again.audit_subject("u1") == first


def test_experiment_counts_attribute_events_by_request(store: SQLiteEventStore) -> None:
    assert store.add_exposure("r1", "exp1", "control", "u1", ["i1", "i2"], model_version="v1")
    assert store.add_exposure("r2", "exp1", "control", "u1", ["i1"])
    assert store.add_exposure("r3", "exp1", "treatment", "u2", ["i3"])
    assert store.add_exposure("r4", "exp2", "x", "u2", ["i3"])
    assert not store.add_exposure("r1", "exp1", "treatment", "u9", [])  # first record kept
    store.add_events([
        event("e1", "u1", "impression", request_id="r1", position=0),
        event("e2", "u1", "click", request_id="r1", position=1),
        event("e3", "u2", "click", request_id="r3", position=0),
        event("e4", "u2", "purchase", request_id="r3", position=0, price=9.5, quantity=2),
        event("e5", "u2", "click"),  # not from a recommendation request
    ])
    counts = store.experiment_counts("exp1")
    assert (counts["control"].units, counts["control"].exposures) == (1, 2)
    assert counts["control"].events["click"] == 1 and counts["control"].events["impression"] == 1
    assert (counts["treatment"].units, counts["treatment"].exposures) == (1, 1)
    assert counts["treatment"].events == {"impression": 0, "view": 0, "click": 1,
                                          "add_to_cart": 0, "purchase": 1}
    assert store.experiment_counts("nope") == {}


def test_iter_events_round_trips_and_filters(store: SQLiteEventStore) -> None:
    later = datetime(2024, 6, 2, tzinfo=UTC)
    store.add_events([
        event("e1", "u1", "view", timestamp="2024-06-01T12:00:00.000123Z", session_id="s1",
              device="mobile"),
        event("e2", "u2", "purchase", timestamp=later, price=3.0, quantity=2),
    ])
    first, second = store.iter_events()
    assert first["timestamp"] == datetime(2024, 6, 1, 12, 0, 0, 123, tzinfo=UTC)
    assert (first["session_id"], first["device"], first["quantity"]) == ("s1", "mobile", 1)
    assert second["price"] == 3.0 and second["received_at"].tzinfo is not None
    assert [e["event_id"] for e in store.iter_events(user_id="u2")] == ["e2"]
    assert [e["event_id"] for e in store.iter_events(since=later)] == ["e2"]
    assert [e["event_id"] for e in store.iter_events(until=later)] == ["e1"]
    assert [e["event_id"] for e in store.iter_events(event_types=["view", "click"])] == ["e1"]
    assert store.count_events(event_type="purchase") == 1


def test_export_writes_canonical_events(store: SQLiteEventStore, tmp_path: Path) -> None:
    assert store.export_events(tmp_path / "empty").events == 0
    store.add_events([
        event("e1", "u1", "impression", request_id="r1", position=0),
        event("e2", "u1", "click", request_id="r1", position=0, session_id="s1"),
        event("e3", "u1", "purchase", item_id="i2", price=4.5, quantity=2, device="app",
              timestamp="2024-06-01T13:00:00+02:00"),
        event("e4", None, "view", session_id="anon"),  # anonymous: not a canonical event
    ])
    summary = store.export_events(tmp_path / "out")
    assert (summary.events, summary.skipped_impressions, summary.skipped_anonymous) == (2, 1, 1)
    raw = pd.read_parquet(summary.path)
    assert list(raw.columns) == list(C.EVENT_COLUMNS)
    events, report = validate_events(raw, now=pd.Timestamp("2025-01-01", tz="UTC"))
    assert report.events_out == 2 and not report.dropped
    # sorted by time; +02:00 was converted to UTC
    assert list(events[C.EVENT_TYPE]) == ["purchase", "click"]
    assert events[C.TIMESTAMP].iloc[0] == pd.Timestamp("2024-06-01T11:00:00Z")
    assert events[C.QUANTITY].iloc[0] == 2 and events[C.DEVICE].iloc[0] == "app"

    items = pd.DataFrame({C.ITEM_ID: ["i1", "i2"], C.TITLE: ["Mug", "Lamp"],
                          C.CATEGORY: ["kitchen", "home"], C.PRICE: [4.5, 20.0]})
    store.export_events(tmp_path / "dataset", items=items)
    dataset = load_dataset(tmp_path / "dataset", now=pd.Timestamp("2025-01-01", tz="UTC"))
    assert len(dataset.events) == 2 and len(dataset.items) == 2


def test_concurrent_writers_from_a_threadpool(store: SQLiteEventStore) -> None:
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for b in range(5):
                store.add_events([event(f"t{t}-{b}-{i}") for i in range(20)])
                store.count_events()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert store.count_events() == 8 * 5 * 20
