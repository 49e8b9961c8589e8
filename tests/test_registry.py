"""The model registry: register, promote, rollback, the atomic pointer, ``recsys models``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipelines.cli import main
from recsys.errors import DataError
from recsys.registry import (
    CHAMPION,
    Registry,
    champion_from_record,
    read_champion,
    read_registry_id,
    write_json_atomic,
)


def fake_bundle(root: Path, version: str) -> Path:
    """A directory with a manifest naming ``version`` (the registry reads nothing else)."""
    from recsys.manifest import MANIFEST

    d = root / version
    d.mkdir(parents=True)
    (d / MANIFEST).write_text(json.dumps(_manifest(version)))
    (d / "payload.bin").write_bytes(version.encode())
    return d


def _manifest(version: str) -> dict:
    return {"schema_version": 2, "version": version, "created_at": "2026-01-01T00:00:00Z",
            "data": {"path": "x", "fingerprint": "f", "holdout_start": "2026-01-01T00:00:00Z"},
            "config": {}, "libraries": {}, "timings_seconds": {}, "models": {},
            "rankers": {}, "retrieval": {}, "sources": ["popular"], "features": [],
            "files": {}, "checksums": {"payload.bin": "0"}}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    from recsys.manifest import Manifest

    try:   # keep the fake manifest honest: it must be one the registry can read
        Manifest.model_validate(_manifest("v"))
    except Exception as exc:  # pragma: no cover - a schema change: fix _manifest
        pytest.fail(f"fake manifest no longer valid: {exc}")
    return Registry(tmp_path / "reg")


def test_register_promote_rollback(registry: Registry, tmp_path: Path) -> None:
    assert registry.champion() is None and registry.versions() == []
    for v in ("20260101T000000Z-aaaa", "20260102T000000Z-bbbb", "20260103T000000Z-cccc"):
        assert registry.register(fake_bundle(tmp_path / "src", v)) == v
    assert [v.version for v in registry.versions()] == [
        "20260101T000000Z-aaaa", "20260102T000000Z-bbbb", "20260103T000000Z-cccc"]
    assert (registry.path_of("20260102T000000Z-bbbb") / "payload.bin").read_bytes() == \
        b"20260102T000000Z-bbbb"
    with pytest.raises(DataError, match="no champion to roll back"):
        registry.rollback()
    registry.promote("20260101T000000Z-aaaa", reason="first")
    with pytest.raises(DataError, match="nothing to roll back to"):
        registry.rollback()
    registry.promote("20260102T000000Z-bbbb")
    registry.promote("20260103T000000Z-cccc", reason="passed the gate")
    champion = registry.champion()
    assert champion is not None and champion.version == "20260103T000000Z-cccc"
    assert champion.path == registry.path_of("20260103T000000Z-cccc").resolve()
    assert champion.reason == "passed the gate"
    assert registry.rollback().version == "20260102T000000Z-bbbb"
    assert registry.rollback().version == "20260101T000000Z-aaaa"   # one further back
    with pytest.raises(DataError, match="nothing to roll back to"):
        registry.rollback()
    actions = [(h["action"], h["version"]) for h in registry.history()]
    assert actions == [("promote", "20260101T000000Z-aaaa"), ("promote", "20260102T000000Z-bbbb"),
                       ("promote", "20260103T000000Z-cccc"), ("rollback", "20260102T000000Z-bbbb"),
                       ("rollback", "20260101T000000Z-aaaa")]
    with pytest.raises(DataError, match="no version 'nope'"):
        registry.promote("nope")


def test_pointer_is_replaced_atomically(tmp_path: Path) -> None:
    """A reader polling while a writer rewrites the pointer never sees a torn or empty file,
    and the directory holds no temporary file afterwards."""
    path = tmp_path / CHAMPION
    write_json_atomic(path, {"version": "v0", "lineage": ["v0"], "pad": "x" * 100_000})
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                champion = read_champion(tmp_path)
                assert champion is not None
                seen.add(champion.version)
            except Exception as exc:  # a torn read would land here
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        write_json_atomic(path, {"version": f"v{i}", "lineage": [f"v{i}"],
                                 "pad": "x" * 100_000})
    stop.set()
    reader.join()
    assert errors == [] and len(seen) > 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHAMPION]


def test_models_cli(registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                    ) -> None:
    a = fake_bundle(tmp_path / "src", "20260101T000000Z-aaaa")
    b = fake_bundle(tmp_path / "src", "20260102T000000Z-bbbb")
    reg = str(registry.root)
    assert main(["models", "register", str(a), "--registry", reg, "--promote"]) == 0
    assert main(["models", "register", str(b), "--registry", reg]) == 0
    assert main(["models", "promote", "20260102T000000Z-bbbb", "--registry", reg]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--registry", reg]) == 0
    out = capsys.readouterr().out
    assert "* 20260102T000000Z-bbbb" in out and "rollback goes to 20260101T000000Z-aaaa" in out
    assert main(["models", "rollback", "--registry", reg]) == 0
    assert "champion: 20260101T000000Z-aaaa (rolled back from 20260102T000000Z-bbbb)" in \
        capsys.readouterr().out
    assert main(["models", "promote", "missing", "--registry", reg]) == 2
    assert "no version 'missing'" in capsys.readouterr().err


def test_every_pointer_change_is_numbered_and_published_in_order(tmp_path: Path) -> None:
    """Promotions and rollbacks get sequence 1, 2, 3...; ``publish`` receives each new pointer
    with the registry's id (kept across writers); promoting the champion again republishes it
    without a new pointer; a pointer file from before the sequence reads as 0."""
    published: list[tuple[str, int, str]] = []
    reg = Registry(tmp_path / "reg", publish=lambda rid, c: published.append(
        (rid, c.sequence, c.version)))
    a, b = (reg.register(fake_bundle(tmp_path / "src", v))
            for v in ("20260101T000000Z-aaaa", "20260102T000000Z-bbbb"))
    assert published == []                       # registering changes no pointer
    reg.promote(a)
    reg.promote(b)
    reg.rollback()
    reg.promote(a, reason="again")               # the champion already: republished only
    rid = read_registry_id(reg.root)
    assert rid is not None and len(rid) == 32
    assert published == [(rid, 1, a), (rid, 2, b), (rid, 3, a), (rid, 3, a)]
    champion = read_champion(reg.root)
    assert champion is not None and champion.sequence == 3
    assert champion_from_record(json.loads(json.dumps(champion.record()))) == champion
    assert len(reg.history()) == 3
    Registry(reg.root).promote(b)                # another writer, no publisher: same id
    assert read_registry_id(reg.root) == rid and reg.champion().sequence == 4  # type: ignore
    old = tmp_path / "old"
    old.mkdir()
    (old / CHAMPION).write_text(json.dumps({"version": a, "lineage": [a]}))
    assert read_champion(old).sequence == 0      # type: ignore[union-attr]
    with pytest.raises(Exception, match="malformed champion record"):
        champion_from_record({"path": "x"})


def test_models_cli_store_errors(registry: Registry, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped SQLite store is refused before the pointer changes (and no empty store is
    made); a store that cannot take the pointer says the file changed and how to publish."""
    reg = str(registry.root)
    a = fake_bundle(tmp_path / "src", "20260101T000000Z-aaaa")
    b = fake_bundle(tmp_path / "src", "20260102T000000Z-bbbb")
    assert main(["models", "register", str(a), "--registry", reg, "--promote"]) == 0
    assert main(["models", "register", str(b), "--registry", reg]) == 0
    typo = tmp_path / "evnets.db"
    assert main(["models", "promote", "20260102T000000Z-bbbb", "--registry", reg,
                 "--store", str(typo)]) == 2
    assert f"event store {typo} does not exist" in capsys.readouterr().err
    assert not typo.exists() and registry.champion().version == "20260101T000000Z-aaaa"  # type: ignore[union-attr]
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    assert main(["models", "promote", "20260102T000000Z-bbbb", "--registry", reg,
                 "--store", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "the registry's champion is now 20260102T000000Z-bbbb" in err
    assert "did not take the pointer" in err
    assert registry.champion().version == "20260102T000000Z-bbbb"  # type: ignore[union-attr]
