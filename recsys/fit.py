"""Fitting the hybrid: dataset -> split -> first-stage models -> sources -> ranker.

First-stage models (popularity, ALS, the content model) learn from the train split and stop
early on the valid split; the stateful sources (co-purchase) learn from the train split; the
ranker learns from the valid split, point in time, over candidates and features computed by the
recommender itself. :meth:`HybridRecommender.fit <recsys.recommender.HybridRecommender.fit>` is
the entry point; this module is its body.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.catalog import Catalog
from recsys.config import TrainConfig
from recsys.data.io import find_table
from recsys.data.split import summarize, time_split
from recsys.data.training import prepare_training
from recsys.data.validate import Dataset, load_dataset
from recsys.errors import DataError
from recsys.history import HistoryIndex
from recsys.manifest import DataInfo, FitReport, ModelInfo, RankerInfo, Span, fingerprint_files
from recsys.models.base import Model, TrainingData, make_validation
from recsys.models.content import ContentModel
from recsys.models.mf import MFModel
from recsys.models.popularity import PopularityModel
from recsys.models.ranker import Ranker
from recsys.ranker_data import build_dataset
from recsys.recommender import HybridRecommender
from recsys.retrieval import RetrievalConfig
from recsys.sources import build_sources
from recsys.sources.base import Parts
from recsys.space import Space
from recsys.threads import set_thread_policy

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def fit_hybrid(data: Dataset | str | Path, config: TrainConfig, *, progress: bool = False,
               log: Log | None = None) -> HybridRecommender:
    """Every part of the hybrid, fitted; the result carries a :class:`FitReport`."""
    say = log or _quiet
    set_thread_policy("train")
    started = time.perf_counter()
    dataset, path, fingerprint = _dataset(data)
    split = time_split(dataset.events, config.split)
    train = prepare_training(split.train, dataset.items, config.interactions)
    valid = make_validation(train, split.valid, k=20, event_types=config.target_events)
    if len(valid.userids) == 0:
        raise DataError(f"{path}: no valid-split user has a train event of types "
                        f"{config.target_events}; cannot early-stop (more data or other types)")
    say(f"data: {train.matrix.shape[0]:,} users x {train.matrix.shape[1]:,} items, "
        f"{train.matrix.nnz:,} interactions; {len(valid.userids):,} validation users")

    timings: dict[str, float] = {}
    content_config = config.content.model_copy(update={"progress": config.content.progress
                                                       and progress})
    models: dict[str, Model] = {"popularity": PopularityModel(config.popularity),
                                "als": MFModel(config.mf), "content": ContentModel(content_config)}
    for name, model in models.items():
        t = time.perf_counter()
        model.fit(train, valid)
        timings[name] = round(time.perf_counter() - t, 2)
        say(f"{name}: fitted in {timings[name]:.1f}s")
    infos = {name: _model_info(name, model, valid) for name, model in models.items()}
    for name, info in infos.items():
        m = info.valid_metrics
        say(f"{name}: valid ndcg@10={m['ndcg@10']:.4f} recall@20={m['recall@20']:.4f}")

    t = time.perf_counter()
    mf, content, popularity = models["als"], models["content"], models["popularity"]
    assert isinstance(mf, MFModel) and isinstance(content, ContentModel)
    assert isinstance(popularity, PopularityModel)
    parts = Parts(Catalog(train.item_table), popularity,
                  build_spaces(mf, content, train, config.hybrid.retrieval))
    history = HistoryIndex.from_events(pd.concat([split.train, split.valid]), train.items)
    hybrid = config.hybrid
    sources = build_sources(hybrid.enabled_sources, hybrid.sources, parts)
    for source in sources.values():
        source.fit(train)
    rec = HybridRecommender(parts=parts, history=history, users=train.users,
                            type_weights=type_weights(config), sources=sources, config=hybrid)
    timings["hybrid_setup"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    ds = build_dataset(rec, split.valid, history, max_queries=config.ranker_queries,
                       seed=hybrid.ranker.seed, context_views=config.ranker_context_views,
                       progress=progress)
    ranker_info: dict[str, Any] = {"queries": len(ds.groups), "rows": int(len(ds.labels)),
                                   "skipped_no_positive": ds.skipped_no_positive}
    if len(ds.groups) >= 10:
        ranker = Ranker(hybrid.ranker).fit(ds.features, ds.labels, ds.groups,
                                           list(rec.features.names))
        rec.set_ranker(ranker)
        ranker_info.update(best_iteration=ranker.best_iteration_,
                           holdout=ranker.history_[ranker.best_iteration_ - 1],
                           importances=ranker.importances(), history=ranker.history_)
    else:
        say(f"ranker: only {len(ds.groups)} usable queries; serving falls back to rank fusion")
    timings["ranker"] = round(time.perf_counter() - t, 2)
    say(f"ranker: {ranker_info['queries']:,} queries, {ranker_info['rows']:,} rows, "
        f"{timings['ranker']:.1f}s")
    timings["total"] = round(time.perf_counter() - started, 2)

    first_stage = _span(split.train)
    spans = {**{name: first_stage for name in (*models, *sources, "catalog")},
             "history": _span(pd.concat([split.train, split.valid])),
             "ranker": _span(split.valid)}
    data_info = DataInfo(path=path, fingerprint=fingerprint, valid_start=split.valid_start,
                         test_start=split.test_start, split=summarize(split),
                         validation=dataset.report.to_dict(), spans=spans)
    rec.report = FitReport(data=data_info, config=config.model_dump(mode="json"),
                           timings_seconds=timings, models=infos,
                           ranker=RankerInfo(**ranker_info))
    return rec


def _dataset(data: Dataset | str | Path) -> tuple[Dataset, str, str]:
    """The validated dataset, where it came from, and a fingerprint of its files."""
    if isinstance(data, Dataset):
        digest = hashlib.sha256()
        for frame in (data.events, data.items):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return data, "(in memory)", digest.hexdigest()
    files = [find_table(data, "events"), find_table(data, "items")]
    return load_dataset(data), str(data), fingerprint_files(files)


def _span(events: pd.DataFrame) -> Span:
    ts = events[C.TIMESTAMP]
    if not len(ts):
        return Span()
    return Span(start=ts.min(), end=ts.max() + pd.Timedelta(microseconds=1), events=len(ts))


def _model_info(name: str, model: Model, valid: Any) -> ModelInfo:
    """NDCG@10 and recall@20 on the validation users, the same way for every model."""
    metrics = {k: round(v, 5) for k, v in model.validation_metrics(valid).items()}
    best = getattr(model, "best_iteration_", getattr(model, "best_epoch_", None))
    return ModelInfo(kind=model.name, valid_metrics=metrics,
                     curve=list(getattr(model, "history_", [])), best_iteration=best)


def type_weights(config: TrainConfig) -> np.ndarray:
    """Interaction weight per event type code, from ``[interactions.weights]`` by name."""
    return np.array([config.interactions.weights.get(t, 0.0) for t in C.EVENT_TYPES],
                    dtype=np.float32)


def build_spaces(mf: MFModel, content: ContentModel, data: TrainingData,
                 config: RetrievalConfig, n_queries: int = 1000, seed: int = 0
                 ) -> dict[str, Space]:
    """FAISS spaces over ALS item factors and content embeddings; an approximate index tunes
    its probes on real user vectors (a seeded sample of training users)."""
    rng = np.random.default_rng(seed)
    n_users = data.matrix.shape[0]
    users = np.sort(rng.choice(n_users, min(n_queries, n_users), replace=False))
    cf_queries = mf.user_vectors(users, data.matrix[users])
    content_queries = content.user_vectors(data.matrix[users])
    content_queries = content_queries[np.linalg.norm(content_queries, axis=1) > 0]
    return {"cf": Space.build("cf", mf, config, cf_queries),
            "content": Space.build("content", content, config, content_queries)}
