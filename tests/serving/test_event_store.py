"""The event store contract, run against every backend (SQLite file and PostgreSQL schema):
idempotent, atomic, durable batches, also from several processes at once; erasure with an
audit trail; the audit and control logs read by id; export to the canonical events format and
through ``recsys events export``; experiment counts and the readout. Backend-specific checks
(durability settings, migrations of an old store, the secret file) are in
``test_store_sqlite.py`` and ``test_store_postgres.py``."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys import columns as C
from recsys.data.validate import load_dataset, validate_events
from recsys.errors import DataError
from serving.event_store import RELOAD, EventStore, open_store

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SECRET = "contract-secret"
ROOT = Path(__file__).resolve().parents[2]


def event(event_id: str, user_id: str | None = "u1", event_type: str = "click",
          **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user_id, "item_id": extra.pop("item_id", "i1"),
            "event_type": event_type, "timestamp": extra.pop("timestamp", T0), **extra}


@pytest.fixture
def store(store_location: str) -> Iterator[EventStore]:
    with open_store(store_location, audit_secret=SECRET) as s:
        yield s


def run_children(code: str, args: list[list[str]], timeout: float = 60) -> list[str]:
    """Start one Python process per argument list at once; their stdout, in order."""
    procs = [subprocess.Popen([sys.executable, "-c", code, *a], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in args]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


# ---------------------------------------------------------------------- events
def test_reinsert_is_idempotent_and_counts_duplicates(store: EventStore) -> None:
    batch = [event(f"e{i}") for i in range(5)]
    assert store.add_events(batch) == (5, 0)
    assert store.add_events(batch) == (0, 5)
    assert store.add_events([event("e4"), event("e5"), event("e5")]) == (1, 2)  # in-batch too
    assert store.count_events() == 6
    assert store.add_events([]) == (0, 0)


def test_batch_is_atomic(store: EventStore) -> None:
    """A CHECK failure mid-batch rolls back the rows before it (INSERT OR IGNORE would have
    skipped the bad row silently and kept the rest)."""
    batch = [event("e1"), event("e2"), event("e3", event_type="hover"), event("e4")]
    with pytest.raises(DataError, match="(?i)rejected, nothing written.*check constraint"):
        store.add_events(batch)
    assert store.count_events() == 0
    assert store.add_events([batch[0], batch[1], batch[3]]) == (3, 0)  # not "duplicates"


@pytest.mark.parametrize(("bad", "message"), [
    ({"event_id": "x", "user_id": "u", "item_id": "i", "event_type": "view"},
     "missing required key 'timestamp'"),
    ({**event("x"), "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    (event("x", timestamp="yesterday"), "bad timestamp 'yesterday'"),
    (event("x", user_id=None), "(?i)check constraint"),  # neither user nor session id
    (event("x", quantity=0), "(?i)check constraint"),
])
def test_bad_event_is_a_data_error(store: EventStore, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        store.add_events([event("ok"), bad])
    assert store.count_events() == 0


CHILD_ACK = """
import sys, time
from datetime import datetime, timezone
from serving.event_store import open_store
store = open_store(sys.argv[1])
t = datetime(2024, 6, 1, tzinfo=timezone.utc)
batch = [{"event_id": f"k{i}", "user_id": "u1", "item_id": f"i{i}", "event_type": "view",
          "timestamp": t} for i in range(100)]
store.add_events(batch)
print("ACK", flush=True)
time.sleep(60)
"""


def test_acknowledged_batch_survives_sigkill(store_location: str) -> None:
    """The child prints ACK only after add_events returns and is SIGKILLed right after, without
    closing the store: the batch must be there on reopen. (This proves ack-after-commit across
    a process crash; surviving power loss is what the backends' durability settings add, see
    test_store_sqlite.py / test_store_postgres.py.)"""
    child = subprocess.Popen([sys.executable, "-c", CHILD_ACK, store_location], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ACK"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with open_store(store_location) as store:
        assert store.count_events() == 100


def test_concurrent_writers_from_a_threadpool(store: EventStore) -> None:
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


CHILD_OVERLAP = """
import json, random, sys
from datetime import datetime, timezone
from serving.event_store import open_store
location, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
t = datetime(2024, 6, 1, tzinfo=timezone.utc)
ids = [f"e{i:04d}" for i in range(600)]
rng.shuffle(ids)                  # every process sends all ids, in its own order
inserted = duplicates = 0
with open_store(location) as store:
    for lo in range(0, len(ids), 50):
        batch = [{"event_id": e, "user_id": f"u{seed}", "item_id": "i1", "event_type": "view",
                  "timestamp": t} for e in ids[lo:lo + 50]]
        i, d = store.add_events(batch)
        inserted += i
        duplicates += d
print(json.dumps([inserted, duplicates]))
"""


def test_overlapping_batches_from_several_processes(store_location: str) -> None:
    """Four processes send the same 600 event ids in different orders at once: each id is
    stored once and counted as inserted exactly once over all processes; every other copy is a
    duplicate (no error, no deadlock, no double count)."""
    import json

    open_store(store_location).close()          # schema in place before the race
    outs = run_children(CHILD_OVERLAP, [[store_location, str(s)] for s in range(4)])
    counts = [json.loads(o) for o in outs]
    assert sum(i for i, _ in counts) == 600
    assert sum(d for _, d in counts) == 3 * 600
    with open_store(store_location) as store:
        assert store.count_events() == 600


CHILD_OPEN = """
import sys
from serving.event_store import open_store
with open_store(sys.argv[1]) as store:
    print(store.count_events())
"""


def test_fresh_store_opened_by_several_processes_at_once(store_location: str) -> None:
    """Replicas starting together against a new store: one applies the migrations, the others
    find them done (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock)."""
    assert run_children(CHILD_OPEN, [[store_location]] * 4) == ["0\n"] * 4


# ---------------------------------------------------------------------- erasure
def test_delete_user_erases_and_audits(store: EventStore) -> None:
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
    assert store.audit_log(after_id=record["id"]) == []


def test_erasure_covers_the_users_sessions(store: EventStore) -> None:
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


def test_audit_subject_is_the_same_keyed_hash_everywhere(store_location: str) -> None:
    """Every replica with the same secret names a user the same way (so an erasure made
    through one is matched by all); another secret gives another subject, and the subject is
    not a plain hash of the id."""
    import hashlib

    from serving.audit import audit_subject

    with open_store(store_location, audit_secret=SECRET) as a, \
            open_store(store_location, audit_secret=SECRET) as b, \
            open_store(store_location, audit_secret="other") as c:
        assert a.audit_subject("u000042") == b.audit_subject("u000042") \
            == audit_subject("u000042", SECRET)
        assert c.audit_subject("u000042") != a.audit_subject("u000042")
        assert hashlib.sha256(b"u000042").hexdigest() not in a.audit_subject("u000042")


# ---------------------------------------------------------------------- experiments, reading
def test_experiment_counts_attribute_events_by_request(store: EventStore) -> None:
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
    exposures = list(store.iter_exposures("exp1"))
    assert {e["request_id"]: e["variant"] for e in exposures} == {
        "r1": "control", "r2": "control", "r3": "treatment"}
    assert all(e["created_at"].tzinfo is not None for e in exposures)


def test_iter_events_round_trips_and_filters(store: EventStore) -> None:
    later = datetime(2024, 6, 2, tzinfo=UTC)
    store.add_events([
        event("e1", "u1", "view", timestamp="2024-06-01T12:00:00.000123Z", session_id="s1",
              device="mobile"),
        event("e2", "u2", "purchase", timestamp=later, price=3.0, quantity=2),
    ])
    store.add_events([event("e0", "u3", "view")])      # a later batch comes later
    first, second, third = store.iter_events()
    assert [first["event_id"], second["event_id"], third["event_id"]] == ["e1", "e2", "e0"]
    assert first["timestamp"] == datetime(2024, 6, 1, 12, 0, 0, 123, tzinfo=UTC)
    assert (first["session_id"], first["device"], first["quantity"]) == ("s1", "mobile", 1)
    assert second["price"] == 3.0 and second["received_at"].tzinfo is not None
    assert [e["event_id"] for e in store.iter_events(user_id="u2")] == ["e2"]
    assert [e["event_id"] for e in store.iter_events(since=later)] == ["e2"]
    assert [e["event_id"] for e in store.iter_events(until=later)] == ["e1", "e0"]
    assert [e["event_id"] for e in store.iter_events(event_types=["view", "click"])] == [
        "e1", "e0"]
    assert store.count_events(event_type="purchase") == 1


def test_export_writes_canonical_events(store: EventStore, tmp_path: Path) -> None:
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


def test_events_export_command(store: EventStore, store_location: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """``recsys events export --store`` takes a file or a URL."""
    from pipelines.cli import main

    store.add_events([event(f"e{n}") for n in range(3)])
    assert main(["events", "export", "--store", store_location, "--out",
                 str(tmp_path / "x")]) == 0
    assert "exported 3 events" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "x" / "events.parquet")) == 3


def test_readout_is_the_same_from_either_store(tmp_path: Path, postgres_url: str) -> None:
    """One simulated experiment stored in both backends gives the same readout, number for
    number (the readout reads exposures and events through the store interface)."""
    from evaluation.experiment_readout import experiment_results
    from tests.evaluation.test_experiment_readout import EXP, populate

    readouts = []
    for location in (str(tmp_path / "e.db"), postgres_url):
        with open_store(location) as s:
            populate(s, units=150, days=3)
            readout = experiment_results(s, EXP)
            readout.pop("generated_at")
            readouts.append(readout)
    assert readouts[0]["summary"]["control"]["units"] > 0 and readouts[0] == readouts[1]


# ---------------------------------------------------------------------- control log
def test_control_log_reads_by_id_and_kind(store: EventStore) -> None:
    first = store.add_control(RELOAD, "default", {"path": "/b/1", "version": "v1"})
    second = store.add_control(RELOAD, "candidate", {"path": "/b/2", "version": "v2"})
    assert second > first
    records = store.control_log()
    assert [(r.id, r.subject, r.payload["path"]) for r in records] == [
        (first, "default", "/b/1"), (second, "candidate", "/b/2")]
    assert records[0].kind == RELOAD and ":" in records[0].origin
    assert records[0].at.tzinfo is not None
    assert [r.id for r in store.control_log(after_id=first)] == [second]
    assert store.control_log(kind="catalog") == []
    with pytest.raises(ValueError, match="unknown control kind 'shutdown'"):
        store.add_control("shutdown", "default", {})


def test_a_poller_never_skips_a_control_record(store_location: str) -> None:
    """Writers in several threads append while a poller reads "everything after the last id I
    saw": it must end up with every record. (Ids that did not follow commit order would let a
    record committed late with a smaller id slip behind the poller.)"""
    writers, per_writer = 6, 15
    with open_store(store_location) as store:
        seen: list[int] = []
        done = threading.Event()

        def poll() -> None:
            last = 0
            while True:
                finished = done.is_set()
                for r in store.control_log(after_id=last):
                    seen.append(r.id)
                    last = r.id
                if finished:
                    return

        def write(w: int) -> None:
            rng = random.Random(w)
            for n in range(per_writer):
                store.add_control(RELOAD, f"b{w}", {"n": n, "pad": "x" * rng.randrange(500)})

        poller = threading.Thread(target=poll)
        poller.start()
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        poller.join()
        assert len(seen) == len(set(seen)) == writers * per_writer
        assert seen == sorted(seen)
