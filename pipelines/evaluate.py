"""``recsys evaluate``: the analysts' offline report for a trained bundle.

The hybrid and each baseline pipeline run through the same
:class:`~recsys.recommender.HybridRecommender`
(``rec.variant(name)``) for the same users: every buyer of the evaluation window (by default the
bundle's test split, events at/after ``data.split.test_start`` in its manifest), asked as of the
window start with the history the bundle holds. Output: ``report.html`` (self-contained),
``metrics.json`` and ``summary.md`` in ``--report DIR``.

Example::

    recsys evaluate --data runs/demo/data --bundle runs/demo/bundle --report runs/demo/eval
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.offline import EvalWindow, evaluate_pipelines, history_popularity, make_window
from evaluation.report import (
    Uncertainty,
    build_report,
    headline_k,
    off_policy_section,
    write_report,
)
from evaluation.segments import cold_warm_items, user_segmentations
from recsys import columns as C
from recsys.data.io import find_table
from recsys.data.validate import load_dataset
from recsys.errors import ConfigError, DataError
from recsys.manifest import Manifest, fingerprint_files
from recsys.recommender import HybridRecommender
from recsys.threads import set_thread_policy

DEFAULT_BASELINES: tuple[str, ...] = ("popularity", "als", "content")
DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
OPEN_BANDIT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "open_bandit"

WindowSpec = tuple[str | pd.Timestamp, str | pd.Timestamp | None]


def _utc(value: str | pd.Timestamp) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"window: cannot parse time {value!r} ({exc})") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def resolve_window(manifest: Manifest, window: WindowSpec | None
                   ) -> tuple[pd.Timestamp, pd.Timestamp | None, str]:
    """(start, end or None, where it came from); the default is the bundle's test split."""
    if window is not None:
        start, end = _utc(window[0]), None if window[1] is None else _utc(window[1])
        if end is not None and end <= start:
            raise ConfigError(f"window: end {end} is not after start {start}")
        return start, end, "given"
    if manifest.data.test_start is None:
        raise DataError("the bundle was trained on every event (no test split); give the "
                        "window explicitly")
    return _utc(manifest.data.test_start), None, "the bundle's test split"


def window_events(events: pd.DataFrame, items: pd.DataFrame, start: pd.Timestamp,
                  end: pd.Timestamp | None) -> pd.DataFrame:
    """Events in [start, end), with missing purchase prices filled from the catalogue (revenue
    needs a price on every attributed purchase)."""
    ts = events[C.TIMESTAMP]
    mask = ts >= start if end is None else (ts >= start) & (ts < end)
    out = events.loc[mask].copy()
    if out[C.PRICE].isna().any():
        catalog = items.set_index(items[C.ITEM_ID].astype(str))[C.PRICE]
        fill = out[C.ITEM_ID].astype(str).map(catalog).astype(float)
        out[C.PRICE] = out[C.PRICE].astype(float).fillna(fill)
    return out.reset_index(drop=True)


def load_window(rec: HybridRecommender, events: pd.DataFrame, start: pd.Timestamp, *,
                max_users: int | None = None, seed: int = 0,
                users: Sequence[str] | None = None) -> EvalWindow:
    """The evaluation window for ``rec``; ``users`` restricts it to those external ids (so two
    bundles are scored on the same people)."""
    if users is not None:
        events = events[events[C.USER_ID].astype(str).isin(set(map(str, users)))]
    window = make_window(rec, events, start=start, max_users=max_users, seed=seed)
    if len(window.users) < 2:
        raise DataError(f"evaluation window from {start} has {len(window.users)} buyer(s) with "
                        "known items; need at least 2 (a later split or more data)")
    return window


def bundle_record(manifest: Manifest, rec: HybridRecommender) -> dict[str, Any]:
    """What the report shows about the bundle: split, config, learning curves, ranker."""
    ranker = manifest.ranker.model_dump() if manifest.ranker is not None else {}
    return {
        "version": manifest.version,
        "created_at": manifest.created_at.isoformat(),
        "split": manifest.data.split,
        "validation": manifest.data.validation,
        "config": manifest.config,
        "timings_seconds": manifest.timings_seconds,
        "curves": {n: m.curve for n, m in manifest.models.items()},
        "valid_metrics": {n: m.valid_metrics for n, m in manifest.models.items()},
        "best_iteration": {n: m.best_iteration for n, m in manifest.models.items()},
        "ranker": ranker,
    }


def _check_names(baselines: Sequence[str], ks: Sequence[int], against: str | None,
                 rec: HybridRecommender) -> tuple[tuple[str, ...], tuple[int, ...]]:
    pipelines = rec.pipelines
    unknown = [b for b in baselines if b not in pipelines or b == "hybrid"]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} (expected some of "
                          f"{', '.join(p for p in pipelines if p != 'hybrid')})")
    bad = [k for k in ks if not 1 <= int(k) <= rec.config.max_k]
    if not ks or bad:
        raise ConfigError(f"k values must be in 1..{rec.config.max_k}, got {list(ks)}")
    models = ("hybrid", *dict.fromkeys(baselines))
    if against is not None and against not in models:
        if against not in pipelines:
            raise ConfigError(f"--against {against!r}: expected one of {', '.join(pipelines)}")
        models = (*models, against)   # the reference of the paired tests is always evaluated
    return models, tuple(sorted({int(k) for k in ks}))


def evaluate(data_dir: str | Path, bundle_dir: str | Path, *,
             baselines: Sequence[str] = DEFAULT_BASELINES, ks: Sequence[int] = DEFAULT_KS,
             report_dir: str | Path, window: WindowSpec | None = None,
             max_users: int | None = None, seed: int = 0, against: str | None = "popularity",
             n_resamples: int = 2000, alpha: float = 0.05,
             open_bandit: str | Path | None = OPEN_BANDIT, progress: bool = False,
             quiet: bool = False) -> dict[str, Any]:
    """Evaluate the hybrid and ``baselines`` of the bundle on ``data_dir``; write the report.

    Returns the report dict (the content of ``metrics.json``).
    """
    set_thread_policy("serve")   # per-request code path, as in serving: no thread fights
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(stage: str, since: float) -> float:
        now = time.perf_counter()
        stages[stage] = round(now - since, 3)
        return now

    rec = HybridRecommender.load(bundle_dir)
    assert rec.manifest is not None
    manifest = rec.manifest
    models, ks = _check_names(baselines, ks, against, rec)
    if max_users is not None and max_users < 2:
        raise ConfigError(f"max_users must be >= 2, got {max_users}")
    dataset = load_dataset(data_dir)
    warnings: list[str] = []
    current = fingerprint_files([find_table(data_dir, "events"), find_table(data_dir, "items")])
    if manifest.data.fingerprint != current:
        warnings.append(f"{data_dir} is not the data the bundle was trained on (fingerprint "
                        "differs); fine for a newer export, misleading otherwise")
    t = lap("load", started)
    start, end, source = resolve_window(manifest, window)
    test_start = manifest.data.test_start
    if test_start is not None and start < _utc(test_start):
        warnings.append(f"the window starts before the bundle's test split ({test_start}): "
                        "models saw part of it in training, so metrics are optimistic")
    events = window_events(dataset.events, dataset.items, start, end)
    w = load_window(rec, events, start, max_users=max_users, seed=seed)
    share = history_popularity(rec, w.start)
    t = lap("window", t)
    if not quiet:
        print(f"evaluate: {len(w.users):,} users from {start} ({source}); models "
              f"{', '.join(models)}; k = {', '.join(map(str, ks))}", flush=True)
    results = evaluate_pipelines(rec, w, models, ks, share=share, progress=progress)
    t = lap("recommend_and_metrics", t)
    stages["recommend"] = round(sum(r.seconds for r in results.values()), 3)
    segs, notes = user_segmentations(rec, w, events)
    k = headline_k(ks)
    cold_warm = cold_warm_items(rec, w, results, k)
    t = lap("segments", t)
    ope = off_policy_section(open_bandit, alpha)
    t = lap("off_policy", t)
    meta = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "bundle_dir": str(bundle_dir), "bundle_version": manifest.version,
            "data_dir": str(data_dir), "window_end": None if end is None else end.isoformat(),
            "window_source": source, "max_users": max_users, "warnings": warnings}
    report = build_report(results, w, ks=ks, against=against, segmentations=segs,
                          segment_notes=notes, cold_warm=cold_warm, share=share, ope=ope,
                          bundle=bundle_record(manifest, rec), meta=meta,
                          uncertainty=Uncertainty(alpha, n_resamples, seed))
    lap("intervals_and_tests", t)
    # timings up to here (writing the files is not in them: metrics.json == the returned dict)
    report["meta"]["stage_seconds"] = stages
    report["meta"]["seconds"] = round(time.perf_counter() - started, 2)
    paths = write_report(report, report_dir)
    if not quiet:
        _print_summary(report)
        print(f"report -> {paths['html']} ({report['meta']['seconds']:.1f}s)")
    return report


def _print_summary(report: dict[str, Any]) -> None:
    k = report["meta"]["headline_k"]
    for name, values in report["headline"].items():
        parts = []
        for metric in (f"ndcg@{k}", f"recall@{k}", f"revenue_per_rec@{k}", f"coverage@{k}"):
            v = values.get(metric, {})
            if v.get("estimate") is None:
                continue
            text = f"{metric}={v['estimate']:.4f}"
            if v.get("low") is not None:
                text += f" [{v['low']:.4f}, {v['high']:.4f}]"
            cmp = report["comparisons"].get(name, {}).get(metric)
            if cmp is not None and not cmp["significant"]:
                text += " (n.s.)"
            parts.append(text)
        print(f"{name:>10}: " + "; ".join(parts))


def parse_list(text: str | None, what: str) -> tuple[str, ...]:
    """``"a,b, c"`` -> ("a", "b", "c"); empty entries are dropped."""
    if text is None:
        return ()
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items and text.strip():
        raise ConfigError(f"{what}: empty list {text!r}")
    return items


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in parse_list(text, "--k"))
    except ValueError:
        raise ConfigError(f"--k: expected comma-separated integers, got {text!r}") from None
    if not ks:
        raise ConfigError("--k: give at least one k")
    return ks


def window_arg(start: str | None, end: str | None) -> WindowSpec | None:
    if start is None and end is not None:
        raise ConfigError("--end needs --start")
    return None if start is None else (start, end)


def evaluate_command(args: argparse.Namespace) -> None:
    """CLI wrapper: ``recsys evaluate --data DIR --bundle B --report DIR [--baselines ...]
    [--k 5,10,20] [--max-users N] [--against NAME] [--start T --end T] [--seed S]
    [--resamples N] [--open-bandit DIR] [--progress]``."""
    against = None if args.against in ("", "none") else args.against
    evaluate(args.data, args.bundle, baselines=parse_list(args.baselines, "--baselines"),
             ks=parse_ks(args.k), report_dir=args.report,
             window=window_arg(args.start, args.end), max_users=args.max_users,
             seed=args.seed, against=against, n_resamples=args.resamples,
             open_bandit=args.open_bandit or OPEN_BANDIT, progress=args.progress)
