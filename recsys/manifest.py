"""The bundle manifest: a typed record of what a bundle holds, written and read only here.

``manifest.json`` says which data the bundle learned from (path, fingerprint, split, the span
each part was fitted on), with which config and library versions, how long each stage took, the
models' validation metrics and curves, the ranker's training summary and feature list, which
parts it holds, and a sha256 per file. It is validated against :class:`Manifest` before anything
else is read: an unknown or missing field (a renamed ``checksums`` key, say) refuses the bundle
with a :class:`~recsys.errors.BundleError` naming the file, so checks cannot be skipped by editing
the manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.configfile import describe
from recsys.errors import BundleError

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
TRACKED_LIBRARIES = ("numpy", "pandas", "scipy", "implicit", "torch", "faiss-cpu", "lightgbm")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(_Record):
    """The events a part was fitted on: ``start <= t < end`` (None = unbounded)."""

    start: datetime | None = None
    end: datetime | None = None
    events: int = 0


class DataInfo(_Record):
    path: str
    fingerprint: str
    holdout_start: datetime                                     # first event of the holdout
    validation: dict[str, Any] = Field(default_factory=dict)   # what validation dropped
    # what each part saw: served_parts, holdout_parts (point in time), rankers, history
    spans: dict[str, Span] = Field(default_factory=dict)


class ModelInfo(_Record):
    kind: str
    valid_metrics: dict[str, float] = Field(default_factory=dict)
    curve: list[dict[str, Any]] = Field(default_factory=list)
    best_iteration: int | None = None
    # what the model learned from (the content model: distinct categories, brands, price bins
    # and words of the catalog)
    inputs: dict[str, int] = Field(default_factory=dict)


class RankerInfo(_Record):
    queries: int = 0
    rows: int = 0
    skipped_no_positive: int = 0
    best_iteration: int | None = None
    holdout: dict[str, float] = Field(default_factory=dict)
    importances: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, float]] = Field(default_factory=list)


class Manifest(_Record):
    schema_version: Literal[2]
    version: str = Field(min_length=1)
    created_at: datetime
    libraries: dict[str, str]
    data: DataInfo
    config: dict[str, Any]
    timings_seconds: dict[str, float]
    models: dict[str, ModelInfo]             # holdout metrics of the point-in-time fit
    rankers: dict[str, RankerInfo]           # per surface
    retrieval: dict[str, dict[str, Any]]
    sources: list[str] = Field(min_length=1)
    features: list[str]
    files: dict[str, list[str]]              # part -> its files, relative to the bundle
    checksums: dict[str, str] = Field(min_length=1)


class FitReport(_Record):
    """What fitting learned about itself: the manifest's content before the bundle's files."""

    data: DataInfo
    config: dict[str, Any]
    timings_seconds: dict[str, float]
    models: dict[str, ModelInfo]
    rankers: dict[str, RankerInfo]

    @classmethod
    def of(cls, manifest: Manifest) -> FitReport:
        return cls(data=manifest.data, config=manifest.config,
                   timings_seconds=manifest.timings_seconds, models=manifest.models,
                   rankers=manifest.rankers)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(paths: list[Path]) -> str:
    """sha256 over the names and contents of the input files (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def version_id(created: datetime, checksums: dict[str, str]) -> str:
    """``20260101T120000Z-1a2b3c4d``: sortable by time, distinct per content."""
    seed = json.dumps(checksums, sort_keys=True) + created.isoformat()
    return created.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha256(seed.encode()).hexdigest()[:8]


def write_manifest(directory: Path, manifest: Manifest) -> None:
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")


def read_manifest(directory: str | Path) -> Manifest:
    """The validated manifest of a bundle directory (checksums not yet verified)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: not found (is {directory} a bundle directory?)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{path}: schema_version {raw.get('schema_version')!r} is not "
                          f"supported (expected {SCHEMA_VERSION}); retrain with this version "
                          f"of recsys")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(describe(exc, str(path))) from None


def verify_checksums(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest lists exists and has its recorded sha256; every part file is
    listed (a file the manifest forgot would be read unverified)."""
    listed = {f for files in manifest.files.values() for f in files}
    unlisted = sorted(listed - set(manifest.checksums))
    if unlisted:
        raise BundleError(f"{directory / MANIFEST}: no checksum for {', '.join(unlisted[:5])}")
    for name, expected in manifest.checksums.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(f"{path}: checksum mismatch (sha256 {actual[:12]}..., manifest "
                              f"says {expected[:12]}...); the file is corrupted or was changed")
