"""A trained, versioned artifact: every fitted part of a hybrid, and a manifest.

Layout of a bundle directory (each part writes through :mod:`recsys.persist`)::

    manifest.json              typed record (recsys.manifest): data, spans, config, libraries,
                               timings, metrics, ranker, features, files and a sha256 per file
    hybrid/                    hybrid.json (config, sources, features, event weights) and
                               users.npz (whose model vectors are kept)
    catalog/                   items.parquet + catalog.json
    history/                   the per-user event history served from
    models/{popularity,als,content}/   the first-stage models
    spaces/{cf,content}/       FAISS indexes over the models' item vectors
    repeat/                    how items are re-bought across shoppers
    sources/<name>/            state a source fitted itself (co-purchase, TIFU, item-kNN)
    rankers/<surface>/         LightGBM text model + its feature list, per surface
    profile/                   the served lists' features and scores at fit (drift baseline)

Nothing is unpickled on load. :func:`load_bundle` validates the manifest, verifies every
checksum before reading a byte of model data, and refuses a bundle whose feature list is not
the one this code computes; any failure is a BundleError naming the file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys.catalog import Catalog
from recsys.config import HybridConfig
from recsys.data.idmap import IdMap
from recsys.errors import BundleError
from recsys.history import HistoryIndex
from recsys.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    Manifest,
    library_versions,
    read_manifest,
    sha256_file,
    verify_checksums,
    version_id,
    write_manifest,
)
from recsys.models.content import ContentModel
from recsys.models.mf import MFModel
from recsys.models.popularity import PopularityModel
from recsys.models.ranker import Ranker
from recsys.persist import (
    field,
    read_arrays,
    read_config,
    read_meta,
    write_arrays,
    write_meta,
)
from recsys.profile import FeatureProfile
from recsys.purchases import RepeatStats
from recsys.sources import build_sources
from recsys.sources.base import Parts
from recsys.space import Space

if TYPE_CHECKING:
    from recsys.recommender import HybridRecommender

KIND = "hybrid"
FORMAT_VERSION = 1
MODELS: dict[str, type[PopularityModel | MFModel | ContentModel]] = {
    "popularity": PopularityModel, "als": MFModel, "content": ContentModel}
SPACE_MODEL = {"cf": "als", "content": "content"}

__all__ = ["save_bundle", "load_bundle", "read_manifest", "MANIFEST"]


def save_bundle(rec: HybridRecommender, out: str | Path) -> Manifest:
    """Write every part of ``rec`` and its manifest into ``out``."""
    if rec.report is None:
        raise BundleError("this recommender has no fit report (fit it, or load a bundle)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = rec.parts
    files: dict[str, list[str]] = {}

    def part(name: str, save: object) -> Path:
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        written = save(directory)  # type: ignore[operator]
        files[name] = [f"{name}/{f}" for f in written]
        return directory

    part("hybrid", lambda d: [
        write_meta(d, KIND, kind=KIND, version=FORMAT_VERSION,
                   config=rec.config.model_dump(mode="json"), sources=list(rec.sources),
                   features=list(rec.features.names),
                   type_weights=rec.type_weights.tolist()),
        write_arrays(d, "users", rec.users.to_arrays("user"))])
    part("catalog", parts.catalog.save)
    part("history", rec.history.save)
    part("repeat", parts.repeat.save)
    models = {"popularity": parts.popularity, "als": parts.spaces["cf"].model,
              "content": parts.spaces["content"].model}
    for name, model in models.items():
        part(f"models/{name}", model.save)
    for name, space in parts.spaces.items():
        part(f"spaces/{name}", space.save)
    for name, source in rec.sources.items():
        written = part(f"sources/{name}", source.save)
        if not files[f"sources/{name}"]:
            del files[f"sources/{name}"]
            written.rmdir()
    for surface, ranker in rec.rankers.items():
        part(f"rankers/{surface}", ranker.save)
    if rec.profile is not None:
        part("profile", rec.profile.save)
    created = datetime.now(UTC)
    checksums = {f: sha256_file(out / f) for fs in files.values() for f in fs}
    report = rec.report
    manifest = Manifest(
        schema_version=SCHEMA_VERSION, version=version_id(created, checksums),
        created_at=created, libraries=library_versions(), data=report.data,
        config=report.config, timings_seconds=report.timings_seconds, models=report.models,
        rankers=report.rankers,
        retrieval={n: s.build_info for n, s in parts.spaces.items()},
        sources=list(rec.sources), features=list(rec.features.names), files=files,
        checksums=checksums)
    write_manifest(out, manifest)
    return manifest


def load_bundle(directory: str | Path) -> HybridRecommender:
    """Load and verify a bundle as a ready :class:`HybridRecommender`."""
    from recsys.recommender import HybridRecommender

    directory = Path(directory)
    manifest = read_manifest(directory)
    verify_checksums(directory, manifest)
    hybrid_dir = directory / "hybrid"
    meta = read_meta(hybrid_dir, KIND, kind=KIND, version=FORMAT_VERSION)
    path = hybrid_dir / f"{KIND}.json"
    config = read_config(meta, path, HybridConfig)
    users = IdMap.from_arrays(read_arrays(hybrid_dir, "users", ("user_ids",)), "user")
    models = {name: cls.load(directory / "models" / name) for name, cls in MODELS.items()}
    popularity = models["popularity"]
    assert isinstance(popularity, PopularityModel)
    spaces = {}
    for name, model_name in SPACE_MODEL.items():
        model = models[model_name]
        assert isinstance(model, MFModel | ContentModel)
        spaces[name] = Space.load(directory / "spaces" / name, name, model)
    parts = Parts(Catalog.load(directory / "catalog"), popularity, spaces,
                  RepeatStats.load(directory / "repeat"))
    _check_sizes(directory, parts)
    names = tuple(field(meta, "sources", path))
    if names != config.enabled_sources:
        raise BundleError(f"{path}: sources {list(names)} differ from its config's "
                          f"{list(config.enabled_sources)}")
    sources = build_sources(names, config.sources, parts)
    for name, source in sources.items():
        if f"sources/{name}" in manifest.files:
            source.load_state(directory / "sources" / name)
    rankers = {part.split("/", 1)[1]: Ranker.load(directory / part)
               for part in manifest.files if part.startswith("rankers/")}
    rec = HybridRecommender(
        parts=parts, history=HistoryIndex.load(directory / "history"), users=users,
        type_weights=np.asarray(field(meta, "type_weights", path), dtype=np.float32),
        sources=sources, config=config, manifest=manifest)
    if tuple(manifest.features) != rec.features.names:
        raise BundleError(f"{directory / MANIFEST}: the bundle's features differ from the ones "
                          f"this version of recsys computes ({_diff(manifest.features, rec)}); "
                          f"retrain with this version")
    for surface, ranker in rankers.items():
        rec.set_ranker(ranker, surface)
    if "profile" in manifest.files:
        rec.profile = FeatureProfile.load(directory / "profile")
    return rec


def _diff(features: list[str], rec: HybridRecommender) -> str:
    have, want = set(features), set(rec.features.names)
    return (f"only in the bundle: {sorted(have - want)}; only in the code: "
            f"{sorted(want - have)}" if have != want else "same names, another order")


def _check_sizes(directory: Path, parts: Parts) -> None:
    """Every per-item part must describe the catalog's items."""
    n = len(parts.catalog)
    sizes = {"models/popularity": parts.popularity.n_items, "repeat": len(parts.repeat.buyers),
             **{f"spaces/{name}": len(space.vectors) for name, space in parts.spaces.items()}}
    for name, size in sizes.items():
        if size != n:
            raise BundleError(f"{directory / name}: holds {size} items, the catalog {n}")
