"""A trained, versioned artifact: models + id maps + catalog snapshot + a manifest.

Layout of a bundle directory::

    manifest.json          version id, schema version, data fingerprint, split cutoffs, config,
                           library versions, timings, validation metrics, learning curves,
                           and a sha256 per file below
    ids.npz                user and item external ids (internal id = position)
    items.parquet          the catalog at training time (categories, prices, stock)
    models/<name>/...      each model's own files (npz / torch state_dict / JSON / LightGBM text)

Everything is a safe format: nothing is unpickled on load. :func:`load_bundle` verifies the
schema version and every checksum before reading a byte of model data, and names the file that
fails.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from recsys.data.idmap import IdMap
from recsys.errors import BundleError
from recsys.models.base import Model

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# model kind -> "module:Class"; imported lazily so loading a popularity-only bundle needs no torch
MODEL_CLASSES: dict[str, str] = {
    "popularity": "recsys.models.popularity:PopularityModel",
    "mf": "recsys.models.mf:MFModel",
    "content": "recsys.models.content:ContentModel",
}
TRACKED_LIBRARIES = ("numpy", "pandas", "scipy", "implicit", "torch", "faiss-cpu", "lightgbm")


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


def _model_class(kind: str) -> type[Model]:
    if kind not in MODEL_CLASSES:
        raise BundleError(f"unknown model kind {kind!r} (expected one of {sorted(MODEL_CLASSES)})")
    module, cls = MODEL_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class Bundle:
    """A loaded bundle. ``models`` maps a model name (e.g. ``"als"``) to a fitted model."""

    directory: Path
    manifest: dict[str, Any]
    users: IdMap
    items: IdMap
    item_table: pd.DataFrame
    models: dict[str, Model] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


class Part(Protocol):
    def save(self, directory: Path) -> list[str]: ...


def write_bundle(out: str | Path, *, models: dict[str, tuple[str, Model]], users: IdMap,
                 items: IdMap, item_table: pd.DataFrame, manifest: dict[str, Any],
                 parts: dict[str, Part] | None = None) -> Path:
    """Write a bundle. ``models`` maps name -> (kind, fitted model); ``parts`` are other
    components saved in ``<name>/`` (e.g. the hybrid's ranker and indexes); ``manifest`` holds
    the caller's fields (config, data fingerprint, cutoffs, timings, metrics, curves)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "ids.npz", allow_pickle=False, **users.to_arrays("user"),
             **items.to_arrays("item"))
    item_table.to_parquet(out / "items.parquet", index=False)
    files = ["ids.npz", "items.parquet"]
    entries = {}
    for name, (kind, model) in models.items():
        model_dir = out / "models" / name
        model_dir.mkdir(parents=True, exist_ok=True)
        written = model.save(model_dir)
        files += [f"models/{name}/{f}" for f in written]
        entries[name] = {"kind": kind, "files": [f"models/{name}/{f}" for f in written]}
    for name, part in (parts or {}).items():
        (out / name).mkdir(parents=True, exist_ok=True)
        files += [f"{name}/{f}" for f in part.save(out / name)]
    created = datetime.now(UTC)
    body = {
        "schema_version": SCHEMA_VERSION,
        "created_at": created.isoformat(),
        "libraries": library_versions(),
        **manifest,
        "models": {**manifest.get("models", {}),
                   **{n: {**manifest.get("models", {}).get(n, {}), **e}
                      for n, e in entries.items()}},
        "checksums": {f: sha256_file(out / f) for f in files},
    }
    seed = json.dumps(body["checksums"], sort_keys=True) + created.isoformat()
    body["version"] = created.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha256(
        seed.encode()).hexdigest()[:8]
    (out / MANIFEST).write_text(json.dumps(body, indent=2, default=str) + "\n")
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise BundleError(f"{path}: not found (is {directory} a bundle directory?)")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{path}: schema_version {version!r} is not supported "
                          f"(expected {SCHEMA_VERSION}); retrain with this version of recsys")
    return manifest


def verify_checksums(directory: Path, manifest: dict[str, Any]) -> None:
    if not isinstance(manifest.get("checksums"), dict) or not manifest["checksums"]:
        raise BundleError(f"{directory / MANIFEST}: no 'checksums' mapping; refused (unverified)")
    for name, expected in manifest["checksums"].items():
        path = directory / name
        if not path.exists():
            raise BundleError(f"{path}: missing from the bundle")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(f"{path}: checksum mismatch (sha256 {actual[:12]}..., manifest "
                              f"says {expected[:12]}...); the file is corrupted or was changed")


def load_bundle(directory: str | Path, *, only: set[str] | None = None) -> Bundle:
    """Load and verify a bundle; ``only`` restricts which models are loaded."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    verify_checksums(directory, manifest)
    with np.load(directory / "ids.npz", allow_pickle=False) as ids:
        users = IdMap.from_arrays(ids, "user")
        items = IdMap.from_arrays(ids, "item")
    item_table = pd.read_parquet(directory / "items.parquet")
    bundle = Bundle(directory, manifest, users, items, item_table)
    for name, entry in manifest.get("models", {}).items():
        if only is not None and name not in only:
            continue
        try:
            bundle.models[name] = _model_class(entry["kind"]).load(directory / "models" / name)
        except BundleError:
            raise
        except Exception as exc:  # a verified file that still fails to parse: name it
            raise BundleError(f"{directory / 'models' / name}: cannot load model {name!r} "
                              f"({type(exc).__name__}: {exc})") from exc
    return bundle
