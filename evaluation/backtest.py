"""A backtest as production lives it: at a cutoff, fit with the production pipeline on every
event before it, recommend at it for the shoppers with history, score what they bought after it
(repeat purchases count).

The hybrid and every baseline are pipelines of the same fitted recommender (same rules), asked
on each surface: ``for_you`` (scored on every purchase), ``buy_again`` (on re-purchases) and
``discover`` (on items new to the shopper). Rolling folds repeat this at earlier cutoffs, each
window ending where the next begins; per-user results are pooled over folds.

>>> # folds = backtest(load_dataset("data/shop"), TrainConfig(), folds=3)
>>> # window, results = pooled(folds)       # results[surface][model] -> ModelResult
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.business import NO_PRICES
from evaluation.offline import (
    EvalWindow,
    ModelResult,
    evaluate_pipelines,
    make_window,
    scoring_pool,
)
from recsys import columns as C
from recsys.catalog_update import FIELDS
from recsys.config import TrainConfig
from recsys.data.validate import Dataset
from recsys.errors import DataError
from recsys.recommender import SURFACES, HybridRecommender

# the strong simple baselines first (repeat-aware next-basket methods), then the classics
DEFAULT_BASELINES: tuple[str, ...] = ("buy_again_pop", "ppop", "tifu", "itemknn", "als",
                                      "popularity", "content")
DEFAULT_SHARE = 0.15    # the default cutoff leaves the latest 15% of events to score


@dataclass
class Fold:
    start: pd.Timestamp                    # the cutoff: fit before, recommend at, score after
    end: pd.Timestamp | None               # the window's end (None: the end of the data)
    rec: HybridRecommender
    window: EvalWindow
    events: pd.DataFrame                   # the window's events (external ids)
    results: dict[str, dict[str, ModelResult]]     # surface -> model -> result
    seconds: dict[str, float]


def cutoffs(events: pd.DataFrame, cutoff: pd.Timestamp | None = None, folds: int = 1,
            share: float = DEFAULT_SHARE) -> list[tuple[pd.Timestamp, pd.Timestamp | None]]:
    """(start, end) of each fold's window, oldest first. One fold: from ``cutoff`` (default the
    ``1 - share`` quantile of event time) to the end; N folds: N windows of ``share`` of the
    events each, the last ending at the end of the data (or ``cutoff`` marks the last start)."""
    if folds < 1:
        raise DataError(f"folds = {folds} (expected >= 1)")
    ts = events[C.TIMESTAMP].sort_values(ignore_index=True)
    if len(ts) < 10:
        raise DataError(f"{len(ts)} events: too few to backtest")

    def at(q: float) -> pd.Timestamp:
        if q <= 0.1:
            raise DataError(f"{folds} folds of {share:.0%} of the events leave too little to "
                            f"train the first one (fewer folds, or a smaller share)")
        return pd.Timestamp(ts.iloc[int(len(ts) * q)])

    last = cutoff if cutoff is not None else at(1 - share)
    if not ts.iloc[0] < last <= ts.iloc[-1]:
        raise DataError(f"cutoff {last} is outside the data ({ts.iloc[0]} .. {ts.iloc[-1]})")
    last_q = float((ts < last).mean())
    starts = [at(last_q - share * (folds - 1 - i)) for i in range(folds - 1)] + [last]
    if any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
        raise DataError(f"the fold cutoffs {[str(s) for s in starts]} are not increasing "
                        "(the data spans too few distinct times)")
    return [(s, e) for s, e in zip(starts, [*starts[1:], None], strict=True)]


def run_fold(dataset: Dataset, start: pd.Timestamp, end: pd.Timestamp | None,
             config: TrainConfig, models: Sequence[str], ks: tuple[int, ...], *,
             max_users: int | None = None, seed: int = 0, progress: bool = False,
             log: Callable[[str], None] | None = None, workers: int = 1) -> Fold:
    """Fit on the events before ``start`` and recommend at it (each in at most ``workers``
    processes), score the window."""
    say = log or (lambda _: None)
    ts = dataset.events[C.TIMESTAMP]
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    train = Dataset(dataset.events[ts < start].reset_index(drop=True), dataset.items,
                    dataset.report)
    rec = HybridRecommender.fit(train, config, log=log, workers=workers)
    seconds["fit"] = round(time.perf_counter() - t, 2)
    return _score(rec, dataset, start, end, models, ks, max_users=max_users, seed=seed,
                  progress=progress, say=say, seconds=seconds, workers=workers)


def _score(rec: HybridRecommender, dataset: Dataset, start: pd.Timestamp,
           end: pd.Timestamp | None, models: Sequence[str], ks: tuple[int, ...], *,
           max_users: int | None, seed: int, progress: bool, say: Callable[[str], None],
           seconds: dict[str, float], workers: int = 1) -> Fold:
    ts = dataset.events[C.TIMESTAMP]
    events = dataset.events[(ts >= start) & ((ts < end) if end is not None else True)]
    events = _with_prices(events, dataset.items)
    priced = has_prices(dataset)
    if not priced:
        say(NO_PRICES)
    window = make_window(rec, events, start=start, max_users=max_users, seed=seed,
                         priced=priced)
    if len(window.users) < 2:
        raise DataError(f"the window from {start} has {len(window.users)} buyer(s) with "
                        "history before it; need at least 2 (an earlier cutoff or more data)")
    unknown = [m for m in models if m not in rec.pipelines]
    if unknown:
        raise DataError(f"unknown pipeline(s) {unknown} (this config serves "
                        f"{', '.join(rec.pipelines)})")
    say(f"backtest at {start}: {len(window.users):,} shoppers with history bought after it")
    t = time.perf_counter()
    with scoring_pool(rec, window, workers) as pool:      # forked once for the fold
        results = {s: evaluate_pipelines(rec, window, tuple(models), ks, surface=s,
                                         progress=progress, workers=pool) for s in SURFACES}
    seconds["recommend_and_score"] = round(time.perf_counter() - t, 2)
    return Fold(start, end, rec, window, events, results, seconds)


def score_bundle(path: str | Path, dataset: Dataset, start: pd.Timestamp,
                 end: pd.Timestamp | None, models: Sequence[str], ks: tuple[int, ...], *,
                 max_users: int | None = None, seed: int = 0) -> Fold:
    """A fitted bundle scored as it is on the window from ``start`` (for a bundle whose data
    ends before it, e.g. the champion a candidate is gated against).

    Items of ``dataset`` the bundle never saw (launched after its data) are added to its
    catalog first, embedded from their metadata, as serving adds them (the catalog API): the
    bundle is scored as it served, and on the same purchases as a side fitted on ``dataset``
    (without them, a window of a new category's purchases had no buyers for it, and a gate
    scored the two sides on different purchases)."""
    rec = HybridRecommender.load(path)
    known = set(rec.items.external_ids.astype(str))
    launched = dataset.items[~dataset.items[C.ITEM_ID].astype(str).isin(known)]
    if len(launched):
        columns = [c for c in (C.ITEM_ID, *FIELDS) if c in launched.columns]
        rec = rec.update_catalog(launched[columns].reset_index(drop=True))
    return _score(rec, dataset, start, end, models, ks, max_users=max_users, seed=seed,
                  progress=False, say=lambda _: None, seconds={})


def backtest(dataset: Dataset, config: TrainConfig, *, cutoff: pd.Timestamp | None = None,
             folds: int = 1, models: Sequence[str] = ("hybrid", *DEFAULT_BASELINES),
             ks: tuple[int, ...] = (5, 10, 20), max_users: int | None = None, seed: int = 0,
             progress: bool = False, log: Callable[[str], None] | None = None,
             workers: int = 1) -> list[Fold]:
    """Every fold of the backtest, oldest first; ``workers`` processes score the shoppers."""
    return [run_fold(dataset, s, e, config, models, ks, max_users=max_users, seed=seed,
                     progress=progress, log=log, workers=workers)
            for s, e in cutoffs(dataset.events, cutoff, folds)]


def pooled(folds: Sequence[Fold]) -> tuple[EvalWindow, dict[str, dict[str, ModelResult]]]:
    """One window and one result per surface and model, users of every fold stacked."""
    if len(folds) == 1:
        return folds[0].window, folds[0].results
    offsets = np.cumsum([0] + [len(f.window.users) for f in folds[:-1]])
    events = pd.concat([f.window.events.assign(user_id=f.window.events["user_id"] + o)
                        for f, o in zip(folds, offsets, strict=True)], ignore_index=True)
    window = EvalWindow(np.concatenate([f.window.users for f in folds]), folds[0].start,
                        [r for f in folds for r in f.window.relevant],
                        [r for f in folds for r in f.window.relevant_new], events,
                        np.concatenate([f.window.returning for f in folds]),
                        priced=all(f.window.priced for f in folds))
    results: dict[str, dict[str, ModelResult]] = {}
    for surface in folds[0].results:
        results[surface] = {}
        for name, first in folds[0].results[surface].items():
            parts = [f.results[surface][name] for f in folds]
            results[surface][name] = ModelResult(
                name, {k: np.vstack([p.lists[k] for p in parts]) for k in first.lists},
                {m: np.concatenate([p.per_user[m] for p in parts]) for m in first.per_user},
                {m: float(np.mean([p.catalog[m] for p in parts])) for m in first.catalog},
                sum(p.seconds for p in parts), [w for p in parts for w in p.warnings])
    return window, results


def has_prices(dataset: Dataset) -> bool:
    """Whether the shop has any price, on an event or in the catalog (without one, revenue
    cannot be measured: its metrics are left out, :data:`evaluation.business.NO_PRICES`)."""
    return any(C.PRICE in frame and bool(frame[C.PRICE].notna().any())
               for frame in (dataset.events, dataset.items))


def _with_prices(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Missing purchase prices filled from the catalogue (revenue needs a price on every
    attributed purchase)."""
    out = events.copy()
    if C.PRICE in out and out[C.PRICE].isna().any() and C.PRICE in items:
        catalog = items.set_index(items[C.ITEM_ID].astype(str))[C.PRICE]
        fill = out[C.ITEM_ID].astype(str).map(catalog).astype(float)
        out[C.PRICE] = out[C.PRICE].astype(float).fillna(fill)
    return out.reset_index(drop=True)
