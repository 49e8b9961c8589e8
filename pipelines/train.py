"""``recsys train``: dataset -> split -> popularity, ALS, content model -> hybrid ranker -> bundle.

First-stage models learn from the train split and stop early on the valid split; the ranker
learns from the valid split, point in time; the test split is left for ``recsys evaluate``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import PipelineConfig
from recsys import columns as C
from recsys.bundle import fingerprint_files, write_bundle
from recsys.copurchase import CoPurchase
from recsys.data.interactions import event_weights
from recsys.data.io import find_table
from recsys.data.split import summarize, time_split
from recsys.data.training import prepare_training
from recsys.data.validate import load_dataset
from recsys.errors import DataError
from recsys.features import ItemStats
from recsys.history import HistoryIndex
from recsys.models.base import Model, make_validation
from recsys.models.content import ContentModel
from recsys.models.mf import MFModel
from recsys.models.popularity import PopularityModel
from recsys.models.ranker import Ranker
from recsys.ranker_data import build_dataset
from recsys.recommender import FEATURES, Recommender
from recsys.retrieval import ItemIndex, RetrievalConfig
from recsys.threads import set_thread_policy


@dataclass
class TrainResult:
    bundle_dir: Path
    manifest: dict[str, Any]
    recommender: Recommender


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def train(data_dir: str | Path, out: str | Path, config: PipelineConfig | None = None, *,
          quiet: bool = False) -> TrainResult:
    """Train every model on ``data_dir`` and write a bundle to ``out``."""
    set_thread_policy("train")
    config = config or PipelineConfig()
    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    split = time_split(dataset.events, config.split)
    data = prepare_training(split.train, dataset.items, config.interactions)
    valid = make_validation(data, split.valid, k=20, event_types=config.target_events)
    if len(valid.userids) == 0:
        raise DataError(f"{data_dir}: no valid-split user has a train event of types "
                        f"{config.target_events}; cannot early-stop (more data or other types)")
    _log(f"data: {data.matrix.shape[0]:,} users x {data.matrix.shape[1]:,} items, "
         f"{data.matrix.nnz:,} interactions; {len(valid.userids):,} validation users", quiet)

    timings: dict[str, float] = {}
    models: dict[str, tuple[str, Model]] = {}
    specs: list[tuple[str, str, Model]] = [
        ("popularity", "popularity", PopularityModel(config.popularity)),
        ("als", "mf", MFModel(config.mf)),
        ("content", "content", ContentModel(config.content.model_copy(
            update={"progress": config.content.progress and not quiet}))),
    ]
    for name, kind, model in specs:
        t = time.perf_counter()
        model.fit(data, valid)
        timings[name] = round(time.perf_counter() - t, 2)
        models[name] = (kind, model)
        _log(f"{name}: fitted in {timings[name]:.1f}s", quiet)
    metrics = {name: _valid_metrics(model, valid) for name, (_, model) in models.items()}
    for name, m in metrics.items():
        _log(f"{name}: valid ndcg@10={m['ndcg@10']:.4f} recall@20={m['recall@20']:.4f}", quiet)

    t = time.perf_counter()
    mf, content = models["als"][1], models["content"][1]
    assert isinstance(mf, MFModel) and isinstance(content, ContentModel)
    weights = event_weights(data.events, config.interactions, data.reference_time)
    history = HistoryIndex.from_events(pd.concat([split.train, split.valid]), data.items)
    indexes = build_indexes(mf, content, data, config.hybrid.retrieval)
    type_weights = np.array([config.interactions.weights.get(t, 0.0) for t in C.EVENT_TYPES],
                            dtype=np.float32)
    rec = Recommender(
        items=data.items, item_table=data.item_table, mf=mf, content=content,
        copurchase=CoPurchase(config.hybrid.copurchase).fit(data.events, len(data.items)),
        history=history, stats=ItemStats.fit(data.events, data.item_table, weights,
                                             data.reference_time),
        weights=type_weights, config=config.hybrid, mf_users=data.users, indexes=indexes)
    timings["hybrid_setup"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    ds = build_dataset(rec, split.valid, history, max_queries=config.ranker_queries,
                       seed=config.hybrid.ranker.seed, progress=not quiet)
    ranker_info: dict[str, Any] = {"queries": len(ds.groups), "rows": int(len(ds.labels)),
                                   "skipped_no_positive": ds.skipped_no_positive}
    if len(ds.groups) >= 10:
        rec.ranker = Ranker(config.hybrid.ranker).fit(ds.features, ds.labels, ds.groups,
                                                      list(FEATURES))
        ranker_info.update(best_iteration=rec.ranker.best_iteration_,
                           holdout=rec.ranker.history_[rec.ranker.best_iteration_ - 1],
                           importances=rec.ranker.importances())
    else:
        _log(f"ranker: only {len(ds.groups)} usable queries; serving falls back to "
             f"rank fusion", quiet)
    timings["ranker"] = round(time.perf_counter() - t, 2)
    _log(f"ranker: {ranker_info['queries']:,} queries, {ranker_info['rows']:,} rows, "
         f"{timings['ranker']:.1f}s", quiet)

    data_files = [find_table(data_dir, "events"), find_table(data_dir, "items")]
    manifest = {
        "data": {"path": str(data_dir), "fingerprint": fingerprint_files(data_files),
                 "split": summarize(split), "validation": dataset.report.to_dict()},
        "config": config.model_dump(mode="json"),
        "timings_seconds": {**timings, "total": round(time.perf_counter() - started, 2)},
        "models": {name: {"valid_metrics": metrics[name],
                          "curve": getattr(model, "history_", []),
                          "best_iteration": getattr(model, "best_iteration_",
                                                    getattr(model, "best_epoch_", None))}
                   for name, (_, model) in models.items()},
        "ranker": ranker_info,
        "retrieval": {n: idx.build_info_ for n, idx in rec.indexes.items()},
    }
    out = write_bundle(out, models=models, users=data.users, items=data.items,
                       item_table=data.item_table, manifest=manifest, parts={"hybrid": rec})
    from recsys.bundle import read_manifest

    final = read_manifest(out)
    _log(f"bundle {final['version']} -> {out} ({final['timings_seconds']['total']:.1f}s)", quiet)
    return TrainResult(out, final, rec)


def build_indexes(mf: MFModel, content: ContentModel, data: Any,
                  config: RetrievalConfig, n_queries: int = 1000, seed: int = 0
                  ) -> dict[str, ItemIndex]:
    """FAISS indexes over ALS item factors and content embeddings; an approximate index tunes
    its nprobe on real user vectors (a seeded sample of training users)."""
    assert mf.user_factors_ is not None and mf.item_factors_ is not None
    assert content.item_embeddings_ is not None
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(data.matrix.shape[0], min(n_queries, data.matrix.shape[0]),
                               replace=False))
    cf_queries = mf.user_factors_[users]
    content_queries = content.user_vectors(data.matrix[users])
    content_queries = content_queries[np.linalg.norm(content_queries, axis=1) > 0]
    return {"cf": ItemIndex.build(mf.item_factors_, config, cf_queries),
            "content": ItemIndex.build(content.item_embeddings_, config, content_queries)}


def _valid_metrics(model: Model, valid: Any) -> dict[str, float]:
    """NDCG@10 and recall@20 on the validation users, the same way for every model."""
    return {name: round(value, 5) for name, value in model.validation_metrics(valid).items()}
