"""Fitting the hybrid as production lives it: learn from every event, rank point in time.

1. **Point in time.** The latest ``holdout`` share of events is held out. The first-stage parts
   (popularity, ALS, the content model, the stateful sources, repeat statistics) are fitted on
   the events before it, early-stopping on it. The rankers learn from it: queries at the
   holdout's start and inside its sessions, candidates and features from that recommender,
   labels from what the shoppers did next (:mod:`recsys.ranker_data`).
2. **Served parts.** Every first-stage part is fitted again on all events, through the last one,
   with the iterations the holdout chose (the content model continues the holdout's encoder
   for ``[content] refit_epochs`` instead of starting again); the per-user history holds every
   event. The rankers from step 1 serve over these parts.

:meth:`HybridRecommender.fit <recsys.recommender.HybridRecommender.fit>` is the entry point;
the manifest records the holdout metrics and the span each part was fitted on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.batch import Background, Workers, check_workers
from recsys.catalog import Catalog
from recsys.config import TrainConfig
from recsys.data.io import find_table
from recsys.data.training import prepare_training
from recsys.data.validate import Dataset, load_dataset
from recsys.errors import DataError
from recsys.history import HistoryIndex
from recsys.manifest import DataInfo, FitReport, ModelInfo, RankerInfo, Span, fingerprint_files
from recsys.models.base import Model, TrainingData, ValidationData, make_validation
from recsys.models.content import ContentModel
from recsys.models.mf import MFModel
from recsys.models.popularity import PopularityModel
from recsys.models.ranker import Ranker
from recsys.profile import FeatureProfile, top_rows
from recsys.purchases import RepeatStats
from recsys.ranker_data import RankerDataset, build_datasets, concat
from recsys.recommender import HybridRecommender
from recsys.retrieval import RetrievalConfig
from recsys.sources import build_sources
from recsys.sources.base import Parts, Source
from recsys.space import Space
from recsys.threads import set_thread_policy

Log = Callable[[str], None]
MIN_QUERIES = 10        # a surface with fewer usable queries uses the for_you ranker
# below these sizes a part is fitted in this process whatever the workers (a fork costs more
# than it saves): the training matrix's interactions, the rankers' rows
PARALLEL_NNZ = 200_000
PARALLEL_ROWS = 200_000


def _quiet(message: str) -> None:
    pass


@dataclass
class FirstStage:
    """First-stage parts fitted on one span of events."""

    training: TrainingData
    models: dict[str, Model]
    parts: Parts
    sources: dict[str, Source]
    span: Span
    infos: dict[str, ModelInfo] = field(default_factory=dict)

    def recommender(self, history: HistoryIndex, config: TrainConfig,
                    rankers: dict[str, Ranker] | None = None) -> HybridRecommender:
        return HybridRecommender(parts=self.parts, history=history, users=self.training.users,
                                 type_weights=type_weights(config), sources=self.sources,
                                 config=config.hybrid, rankers=rankers)


def fit_first_stage(events: pd.DataFrame, items: pd.DataFrame, config: TrainConfig,
                    valid_events: pd.DataFrame | None, say: Log, timings: dict[str, float],
                    stage: str, progress: bool = False, start: FirstStage | None = None,
                    workers: int | None = 1) -> FirstStage:
    """Every first-stage part on ``events``; with ``valid_events``, early stopping on them.
    ``start``: the content model continues from that stage's (``[content] refit_epochs``).
    ``workers`` > 1 (None: every core): once the data is big enough to pay for the fork, the
    content model trains in a process of its own meanwhile; the parts are the same either way."""
    train = prepare_training(events, items, config.interactions)
    valid: ValidationData | None = None
    if valid_events is not None:
        valid = make_validation(train, valid_events, k=20, event_types=config.target_events)
        if len(valid.userids) == 0:
            raise DataError(f"no shopper of the holdout window (the latest {config.holdout:.0%} "
                            f"of events) has an earlier event, or none of types "
                            f"{config.target_events}: cannot early-stop (more data needed)")
    say(f"{stage}: {train.matrix.shape[0]:,} users x {train.matrix.shape[1]:,} items, "
        f"{train.matrix.nnz:,} interactions")
    content = config.content.model_copy(update={"progress": config.content.progress and progress})
    warm = start.models["content"] if start is not None and config.content.refit_epochs else None
    job = _ContentJob(ContentModel(content), train, valid,
                      warm if isinstance(warm, ContentModel) else None)
    # the content model (one thread) trains in a forked process while ALS and the sources
    # fit here, ALS then on one thread too: the two cores are busy and nobody waits
    beside = _parallel(workers, train.matrix.nnz, PARALLEL_NNZ) > 1
    with Background(_fit_content, job, fork=beside) as fitting:
        popularity = PopularityModel(config.popularity)
        mf = MFModel(config.mf, num_threads=1 if beside else None)
        for name, model in (("popularity", popularity), ("als", mf)):
            t = time.perf_counter()
            model.fit(train, valid)
            timings[f"{stage}_{name}"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        # the sources read the spaces when asked, not when fitted: they are added below
        parts = Parts(Catalog(train.item_table), popularity, {},
                      RepeatStats.fit(train.events, len(train.items)))
        sources = build_sources(config.hybrid.enabled_sources, config.hybrid.sources, parts)
        for source in sources.values():
            source.fit(train)
        timings[f"{stage}_sources"] = round(time.perf_counter() - t, 2)
        cm, timings[f"{stage}_content"] = fitting.result()
    t = time.perf_counter()
    parts.spaces.update(build_spaces(mf, cm, train, config.hybrid.retrieval))
    timings[f"{stage}_spaces"] = round(time.perf_counter() - t, 2)
    models: dict[str, Model] = {"popularity": popularity, "als": mf, "content": cm}
    infos = {} if valid is None else {n: _model_info(m, valid) for n, m in models.items()}
    for name, info in infos.items():
        m = info.valid_metrics
        say(f"{stage} {name}: ndcg@10={m['ndcg@10']:.4f} recall@20={m['recall@20']:.4f}")
    if cm.vocab_ is not None:
        used = cm.vocab_.inputs()
        absent = [n.replace("_", " ") for n, v in used.items() if not v]
        say(f"{stage} content model inputs: "
            + ", ".join(f"{v:,} {n.replace('_', ' ')}" for n, v in used.items())
            + (f" (nothing learned from {', '.join(absent)})" if absent else ""))
    return FirstStage(train, models, parts, sources, _span(events), infos)


@dataclass
class _ContentJob:
    model: ContentModel
    train: TrainingData
    valid: ValidationData | None
    warm: ContentModel | None


def _fit_content(job: _ContentJob) -> tuple[ContentModel, float]:
    t = time.perf_counter()
    job.model.fit(job.train, job.valid, start=job.warm)
    return job.model, round(time.perf_counter() - t, 2)


def _parallel(workers: int | None, size: int, threshold: int) -> int:
    """Processes to use: one below ``threshold`` (a fork costs more than it saves there), else
    ``workers`` (None: every core)."""
    return 1 if size < threshold else check_workers(workers)


def fit_hybrid(data: Dataset | str | Path, config: TrainConfig, *, progress: bool = False,
               log: Log | None = None, workers: int | None = None) -> HybridRecommender:
    """Every part of the hybrid, fitted; the result carries a :class:`FitReport`.
    ``workers``: processes to fit in at most (the content model beside ALS and the sources, the
    rankers' queries and the surfaces' rankers; default: every core), each used once its part
    is big enough to pay for the fork. The fitted hybrid does not depend on it."""
    say = log or _quiet
    check_workers(workers)       # refused now, not only once a part is big enough to fork
    set_thread_policy("train")
    started = time.perf_counter()
    dataset, path, fingerprint = _dataset(data)
    events = dataset.events
    start = holdout_start(events, config.holdout)
    early, late = events[events[C.TIMESTAMP] < start], events[events[C.TIMESTAMP] >= start]
    timings: dict[str, float] = {}
    past = fit_first_stage(early, dataset.items, config, late, say, timings, "holdout",
                           progress, workers=workers)
    history = HistoryIndex.from_events(events, past.training.items)
    t = time.perf_counter()
    windows = [(past.recommender(history, config), late, start)]
    length, end = events[C.TIMESTAMP].max() - start, start
    ts = events[C.TIMESTAMP]
    asked = returning_shoppers(events, start, ts.max())
    for k in range(1, config.ranker_windows):   # as long, just before: parts fitted before it
        if asked >= config.ranker_min_queries:
            break
        begin = end - length
        if (ts < begin).sum() < len(events) * config.holdout:
            say(f"ranker window {k + 1}: too few events before {begin}; not used")
            break
        say(f"ranker window {k + 1} from {begin}: the later windows ask {asked:,} shoppers "
            f"(fewer than ranker_min_queries = {config.ranker_min_queries:,})")
        asked += returning_shoppers(events, begin, end)
        older = fit_first_stage(events[ts < begin], dataset.items, refit_config(config, past),
                                None, say, timings, f"window{k + 1}", workers=workers)
        windows.append((older.recommender(history, config),
                        events[(ts >= begin) & (ts < end)], begin))
        end = begin
    rankers, ranker_infos, profile = fit_rankers(windows, history, config, progress, say,
                                                 workers, timings)
    timings["rankers"] = round(time.perf_counter() - t, 2)
    final = past
    if config.refit:
        final = fit_first_stage(events, dataset.items, refit_config(config, past, continues=True),
                                None, say, timings, "refit", progress, start=past,
                                workers=workers)
    rec = final.recommender(history, config, rankers)
    rec.profile = profile
    timings["total"] = round(time.perf_counter() - started, 2)
    spans = {"served_parts": final.span, "holdout_parts": past.span, "rankers": _span(late),
             "history": _span(events)}
    info = DataInfo(path=path, fingerprint=fingerprint, holdout_start=start,
                    validation=dataset.report.to_dict(), spans=spans)
    rec.report = FitReport(data=info, config=config.model_dump(mode="json"),
                           timings_seconds=timings, models=past.infos, rankers=ranker_infos)
    say(f"fitted in {timings['total']:.1f}s")
    return rec


def fit_rankers(windows: list[tuple[HybridRecommender, pd.DataFrame, pd.Timestamp]],
                history: HistoryIndex, config: TrainConfig, progress: bool, say: Log,
                workers: int | None = 1, timings: dict[str, float] | None = None
                ) -> tuple[dict[str, Ranker], dict[str, RankerInfo], FeatureProfile | None]:
    """One ranker per surface with enough usable queries, from every (point-in-time
    recommender, window, window start); and the profile of the for_you ranker's top-10 rows
    (what drift monitoring compares live traffic with). The queries are asked, and the
    surfaces' rankers fitted, in ``workers`` processes (each ranker on one thread, so the
    result does not depend on ``workers``)."""
    t = time.perf_counter()
    per_window = [build_datasets(rec, window, history, start=int(start.timestamp()),
                                 cutoffs=config.ranker_cutoffs,
                                 max_queries=config.ranker_queries // len(windows),
                                 seed=config.hybrid.ranker.seed,
                                 context_views=config.ranker_context_views, progress=progress,
                                 workers=workers)
                  for rec, window, start in windows]
    datasets = {s: concat([d[s] for d in per_window]) for s in per_window[0]}
    if timings is not None:
        timings["ranker_queries"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    rec = windows[0][0]
    names = list(rec.features.names)
    fitted = [s for s, ds in datasets.items() if len(ds.groups) >= MIN_QUERIES]
    rows = sum(len(datasets[s].labels) for s in fitted)
    with Workers(_RankerJob(datasets, config, names),
                 _parallel(workers, rows, PARALLEL_ROWS) if len(fitted) > 1 else 1) as pool:
        rankers = dict(zip(fitted, (r for chunk in pool.map(_fit_surfaces, fitted, size=1)
                                    for r in chunk), strict=True))
    if timings is not None:
        timings["ranker_fits"] = round(time.perf_counter() - t, 2)
    infos, profile = {}, None
    for surface, ds in datasets.items():
        info: dict[str, Any] = {"queries": len(ds.groups), "rows": int(len(ds.labels)),
                                "skipped_no_positive": ds.skipped_no_positive}
        if surface in rankers:
            ranker = rankers[surface]
            info.update(best_iteration=ranker.best_iteration_,
                        holdout=ranker.history_[ranker.best_iteration_ - 1],
                        importances=ranker.importances(), history=ranker.history_)
            if surface == "for_you":
                scores = ranker.predict(ds.features)
                top = top_rows(scores, ds.groups)
                profile = FeatureProfile.fit(ds.features[top], names, scores[top])
        infos[surface] = RankerInfo(**info)
        say(f"ranker {surface}: {info['queries']:,} queries, {info['rows']:,} rows"
            + ("" if surface in rankers else " (too few: the for_you ranker stands in)"))
    return rankers, infos, profile


@dataclass
class _RankerJob:
    datasets: dict[str, RankerDataset]
    config: TrainConfig
    names: list[str]


def _fit_surfaces(job: _RankerJob, surfaces: Sequence[str]) -> list[Ranker]:
    return [_fit_ranker(job.datasets[s], job.config, job.names) for s in surfaces]


def _fit_ranker(ds: RankerDataset, config: TrainConfig, names: list[str]) -> Ranker:
    """Early stopping watches a seeded share of the shoppers (all their queries: a shopper
    asked at several instants has overlapping labels, so splitting by time would leak)."""
    share = config.hybrid.ranker.holdout_share
    key = f"{config.hybrid.ranker.seed}:"
    holdout = np.array([int(hashlib.blake2b((key + u).encode(), digest_size=4).hexdigest(), 16)
                        % 10_000 < share * 10_000 for u in ds.queries["user_id"]])
    return Ranker(config.hybrid.ranker).fit(ds.features, ds.labels, ds.groups, names, holdout)


def returning_shoppers(events: pd.DataFrame, begin: pd.Timestamp, end: pd.Timestamp) -> int:
    """Shoppers active in [begin, end] with an event before ``begin``: the horizon queries a
    window gives the rankers."""
    ts, users = events[C.TIMESTAMP], events[C.USER_ID]
    inside = pd.unique(users[(ts >= begin) & (ts <= end)])
    return int(pd.Index(inside).isin(pd.unique(users[ts < begin])).sum())


def refit_config(config: TrainConfig, past: FirstStage, *, continues: bool = False
                 ) -> TrainConfig:
    """The config for parts fitted again: the iterations early stopping chose on the holdout
    (a content model that ``continues`` the holdout's: ``[content] refit_epochs``)."""
    mf, content = past.models["als"], past.models["content"]
    assert isinstance(mf, MFModel) and isinstance(content, ContentModel)
    epochs = content.best_epoch_ or config.content.epochs
    if continues and config.content.refit_epochs:
        epochs = config.content.refit_epochs
    return config.model_copy(update={
        "mf": config.mf.model_copy(update={"iterations": mf.best_iteration_ or
                                           config.mf.iterations}),
        "content": config.content.model_copy(update={"epochs": epochs})})


def holdout_start(events: pd.DataFrame, share: float) -> pd.Timestamp:
    """The first instant of the latest ``share`` of events (events at it all fall after)."""
    ts = events[C.TIMESTAMP].sort_values(ignore_index=True)
    if len(ts) < 3:
        raise DataError(f"{len(ts)} events (expected at least 3 to hold some out)")
    start = ts.iloc[min(int(len(ts) * (1 - share)), len(ts) - 1)]
    if not ts.iloc[0] < start:
        raise DataError(f"events span too few distinct times to hold out the latest "
                        f"{share:.0%} ({ts.iloc[0]} .. {ts.iloc[-1]})")
    return pd.Timestamp(start)


def _dataset(data: Dataset | str | Path) -> tuple[Dataset, str, str]:
    """The validated dataset, where it came from, and a fingerprint of it."""
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


def _model_info(model: Model, valid: ValidationData) -> ModelInfo:
    """NDCG@10 and recall@20 on the holdout users, the same way for every model."""
    metrics = {k: round(v, 5) for k, v in model.validation_metrics(valid).items()}
    best = getattr(model, "best_iteration_", getattr(model, "best_epoch_", None))
    inputs = model.vocab_.inputs() if isinstance(model, ContentModel) and model.vocab_ else {}
    return ModelInfo(kind=model.name, valid_metrics=metrics,
                     curve=list(getattr(model, "history_", [])), best_iteration=best,
                     inputs=inputs)


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
