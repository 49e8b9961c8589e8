"""A model registry: a directory of bundle versions and a champion pointer, with its history.

Layout::

    REGISTRY/
      versions/<version>/        a bundle (its manifest's version names the directory)
      versions/<version>.json    what the registry knows of it: when and how it was registered,
                                 the gate's verdict and lines when a retrain compared it
      champion.json              the pointer: the version served, and the lineage of champions
      history.jsonl              every promotion and rollback, one JSON line each (audit)
      registry.json              the registry's id (made on the first write): the subject of
                                 the champion records it publishes

The pointer is the one thing serving reads (``registry`` in the serving settings: every worker
polls it, :mod:`serving.champion`). Each change of it has the next ``sequence`` number, and a
registry made with ``publish`` hands every change to that callable too, with the registry's id
(inside the lock, so in order): the API's event store keeps the pointer as a ``champion``
record of its control log, read by every replica of that store (:mod:`serving.champion` serves
the pointer with the highest sequence, whether it came from this file or from the store; a
replica loads the version from its own view of the registry, so the registry may be mounted at
another path on each host). The file is replaced atomically (written to a temporary file in
the same directory, fsynced, then ``os.replace``d), so a reader sees the old pointer or the new
one, never a torn file. Writers take an exclusive ``flock`` on ``REGISTRY/.lock``.

``lineage`` is the list of champions in the order they were promoted; ``rollback`` drops the
last one (the previous champion serves again), and a second rollback goes one further back.

>>> # reg = Registry("var/registry"); v = reg.register("runs/new/bundle")
>>> # reg.promote(v, reason="passed the gate"); reg.rollback()
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.errors import BundleError, DataError
from recsys.manifest import read_manifest

CHAMPION = "champion.json"
IDENTITY = "registry.json"
HISTORY = "history.jsonl"
VERSIONS = "versions"
MAX_LINEAGE = 100     # champions remembered for rollback


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` to ``path`` so that readers see either the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)      # the rename itself survives a crash
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class Champion:
    """What ``champion.json`` says."""

    version: str
    path: Path                  # the bundle directory (absolute)
    promoted_at: str
    reason: str
    lineage: tuple[str, ...]    # champions in promotion order; the last is ``version``
    sequence: int = 0           # pointer changes so far (0: a pointer written before it counted)

    def record(self) -> dict[str, Any]:
        """The pointer as a JSON object with the bundle's absolute path (what a registry
        publishes; :func:`champion_from_record` reads it back)."""
        return {"version": self.version, "path": str(self.path), "promoted_at": self.promoted_at,
                "reason": self.reason, "lineage": list(self.lineage), "sequence": self.sequence}


def champion_from_record(record: dict[str, Any]) -> Champion:
    """The pointer a registry published (:meth:`Champion.record`); BundleError if malformed."""
    try:
        return Champion(str(record["version"]), Path(record["path"]),
                        str(record.get("promoted_at", "")), str(record.get("reason", "")),
                        tuple(str(v) for v in record.get("lineage", [record["version"]])),
                        int(record.get("sequence", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"malformed champion record {record!r} ({exc})") from None


@dataclass(frozen=True)
class VersionInfo:
    """One registered version and its record."""

    version: str
    path: Path
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def registered_at(self) -> str:
        return str(self.record.get("registered_at", ""))

    @property
    def gate(self) -> str:
        """``pass``, ``fail`` or ``-`` (never compared)."""
        passed = self.record.get("gate", {}).get("passed")
        return "-" if passed is None else ("pass" if passed else "fail")


def read_champion(root: str | Path) -> Champion | None:
    """The pointer of the registry at ``root``; None when nothing was promoted yet."""
    root = Path(root)
    path = root / CHAMPION
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    try:
        version = str(raw["version"])
        return Champion(version, (root / VERSIONS / version).resolve(),
                        str(raw.get("promoted_at", "")), str(raw.get("reason", "")),
                        tuple(str(v) for v in raw.get("lineage", [version])),
                        int(raw.get("sequence", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: malformed champion pointer ({exc})") from None


Publish = Callable[[str, Champion], None]     # (registry id, the new pointer)


def read_registry_id(root: str | Path) -> str | None:
    """The id of the registry at ``root``; None before its first write."""
    try:
        return str(json.loads((Path(root) / IDENTITY).read_text())["id"])
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise BundleError(f"{Path(root) / IDENTITY}: malformed registry id ({exc})") from None


class Registry:
    """The registry directory at ``root`` (created on first write). ``publish``, when given,
    receives every new pointer after it is written here (see the module docstring)."""

    def __init__(self, root: str | Path, publish: Publish | None = None) -> None:
        self.root = Path(root)
        self.publish = publish

    # ------------------------------------------------------------------ reading
    def path_of(self, version: str) -> Path:
        return self.root / VERSIONS / version

    def versions(self) -> list[VersionInfo]:
        """Registered versions, oldest first (version ids sort by creation time)."""
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        out = []
        for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            record_path = base / f"{d.name}.json"
            record = json.loads(record_path.read_text()) if record_path.is_file() else {}
            out.append(VersionInfo(d.name, d, record))
        return out

    def champion(self) -> Champion | None:
        return read_champion(self.root)

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def require(self, version: str) -> Path:
        path = self.path_of(version)
        if not (path / "manifest.json").is_file():
            known = ", ".join(v.version for v in self.versions()[-5:]) or "none"
            raise DataError(f"registry {self.root}: no version {version!r} (latest: {known})")
        return path

    # ------------------------------------------------------------------ writing
    @contextmanager
    def _locked(self) -> Iterator[None]:
        (self.root / VERSIONS).mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if read_registry_id(self.root) is None:
                    write_json_atomic(self.root / IDENTITY, {"id": uuid.uuid4().hex,
                                                             "created_at": _now()})
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def register(self, bundle: str | Path, *, source: str = "", move: bool = False,
                 **record: Any) -> str:
        """Copy (or ``move``) a bundle into the registry; returns its version. The copy is
        made beside the target and renamed into place, so a half-copied version never shows.
        Registering the same version twice is a no-op (the record is updated)."""
        bundle = Path(bundle)
        version = read_manifest(bundle).version
        with self._locked():
            target = self.path_of(version)
            if not target.exists():
                tmp = target.parent / f".{version}.incoming"
                shutil.rmtree(tmp, ignore_errors=True)
                if move:
                    shutil.move(str(bundle), tmp)
                else:
                    shutil.copytree(bundle, tmp)
                os.replace(tmp, target)
            self._write_record(version, {"registered_at": _now(), "source": source or
                                         str(bundle.resolve()), **record})
        return version

    def annotate(self, version: str, **record: Any) -> None:
        """Add keys to a version's record (e.g. the gate's verdict)."""
        self.require(version)
        with self._locked():
            self._write_record(version, record)

    def _write_record(self, version: str, update: dict[str, Any]) -> None:
        path = self.root / VERSIONS / f"{version}.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        record.update(update)
        write_json_atomic(path, record)

    def promote(self, version: str, *, reason: str = "promoted by hand") -> Champion:
        """Make ``version`` the champion (atomic pointer write, history line). Promoting the
        champion again changes nothing here and publishes the pointer again (e.g. to a store
        that did not have it yet)."""
        self.require(version)
        with self._locked():
            current = self.champion()
            lineage = list(current.lineage) if current else []
            if current is not None and current.version == version:
                self._publish(current)
                return current
            lineage = [*lineage, version][-MAX_LINEAGE:]
            return self._point(version, lineage, "promote", reason, current)

    def rollback(self, *, reason: str = "rolled back by hand") -> Champion:
        """Serve the champion before the current one again."""
        with self._locked():
            current = self.champion()
            if current is None:
                raise DataError(f"registry {self.root}: no champion to roll back")
            lineage = list(current.lineage)
            while len(lineage) > 1 and lineage[-1] == current.version:
                lineage.pop()
            if not lineage or lineage[-1] == current.version:
                raise DataError(f"registry {self.root}: {current.version} is the first "
                                "champion; there is nothing to roll back to")
            target = lineage[-1]
            self.require(target)
            return self._point(target, lineage, "rollback", reason, current)

    def _point(self, version: str, lineage: list[str], action: str, reason: str,
               current: Champion | None) -> Champion:
        at = _now()
        write_json_atomic(self.root / CHAMPION, {
            "version": version, "path": f"{VERSIONS}/{version}", "promoted_at": at,
            "reason": reason, "lineage": lineage,
            "sequence": (current.sequence if current is not None else 0) + 1})
        with open(self.root / HISTORY, "a") as f:
            f.write(json.dumps({"at": at, "action": action, "version": version,
                                "previous": current.version if current else None,
                                "reason": reason}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        champion = self.champion()
        assert champion is not None
        self._publish(champion)
        return champion

    def _publish(self, champion: Champion) -> None:
        if self.publish is not None:
            registry_id = read_registry_id(self.root)
            assert registry_id is not None      # made by _locked
            self.publish(registry_id, champion)
