"""``recsys evaluate``: the analysts' backtest report.

At a cutoff (default: the 85% quantile of event time; ``--folds N`` for rolling cutoffs) the
production pipeline fits on every event before it, recommends at it for the shoppers with
history, and is scored on what they bought after it (:mod:`evaluation.backtest`), beside the
strong simple baselines, on each surface. The report opens with the verdict: the best model and
the hybrid's lift over the best baseline with a paired 95% interval. Output: ``report.html``
(self-contained), ``metrics.json`` and ``summary.md`` in ``--report DIR``.

Example::

    recsys evaluate --data runs/demo/data --report runs/demo/report
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.backtest import DEFAULT_BASELINES, Fold, backtest, pooled
from evaluation.offline import history_popularity
from evaluation.report import (
    Uncertainty,
    build_report,
    headline_k,
    intervals,
    json_safe,
    off_policy_section,
    segment_section,
    write_report,
)
from evaluation.segments import cold_warm_items, user_segmentations
from evaluation.verdict import verdict
from recsys.batch import check_workers, progress_wanted
from recsys.config import TrainConfig, load_train_config
from recsys.data.validate import load_dataset
from recsys.errors import ConfigError
from recsys.manifest import FitReport
from recsys.sources import pipeline_names
from recsys.threads import set_thread_policy

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
OPEN_BANDIT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "open_bandit"


def utc(value: str | pd.Timestamp, what: str = "cutoff") -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: cannot parse time {value!r} ({exc})") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def fit_record(report: FitReport | None) -> dict[str, Any]:
    """What the report shows about the (last fold's) fit: config, curves, rankers, spans."""
    if report is None:
        return {}
    return {
        "data": report.data.model_dump(mode="json"),
        "config": report.config,
        "timings_seconds": report.timings_seconds,
        "curves": {n: m.curve for n, m in report.models.items()},
        "valid_metrics": {n: m.valid_metrics for n, m in report.models.items()},
        "best_iteration": {n: m.best_iteration for n, m in report.models.items()},
        "rankers": {s: r.model_dump() for s, r in report.rankers.items()},
    }


def evaluate(data_dir: str | Path, *, report_dir: str | Path, config: TrainConfig | None = None,
             cutoff: str | pd.Timestamp | None = None, folds: int = 1,
             baselines: Sequence[str] = DEFAULT_BASELINES, ks: Sequence[int] = DEFAULT_KS,
             max_users: int | None = None, seed: int = 0, n_resamples: int = 2000,
             alpha: float = 0.05, open_bandit: str | Path | None = OPEN_BANDIT,
             progress: bool = False, quiet: bool = False,
             workers: int | None = 1) -> dict[str, Any]:
    """Backtest the hybrid and ``baselines`` on ``data_dir``; write the report; return it (the
    content of ``metrics.json``). ``workers``: processes scoring the shoppers (None: every
    core; the report is the same); ``progress``: a progress line per surface and model on
    stderr."""
    started = time.perf_counter()
    if "hybrid" in baselines:
        raise ConfigError("--baselines: 'hybrid' is always evaluated; name the others")
    unknown = [b for b in baselines if b not in pipeline_names()]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} (expected some of "
                          f"{', '.join(p for p in pipeline_names() if p != 'hybrid')})")
    if not ks or any(not 1 <= int(k) <= 100 for k in ks):
        raise ConfigError(f"k values must be in 1..100, got {list(ks)}")
    ks = tuple(sorted({int(k) for k in ks}))
    if max_users is not None and max_users < 2:
        raise ConfigError(f"max_users must be >= 2, got {max_users}")
    workers = check_workers(workers)
    config = config or TrainConfig()
    dataset = load_dataset(data_dir)
    say = None if quiet else (lambda message: print(message, flush=True))
    models = ("hybrid", *dict.fromkeys(baselines))
    folds = backtest(dataset, config, cutoff=None if cutoff is None else utc(cutoff),
                     folds=folds, models=models, ks=ks, max_users=max_users, seed=seed,
                     progress=progress, log=say, workers=workers)
    set_thread_policy("serve")
    report = build_backtest_report(folds, ks, Uncertainty(alpha, n_resamples, seed),
                                   open_bandit, data_dir, max_users)
    report["meta"]["seconds"] = round(time.perf_counter() - started, 2)
    paths = write_report(report, report_dir)
    if not quiet:
        print(report["verdict"]["sentence"])
        _print_summary(report)
        print(f"report -> {paths['html']} ({report['meta']['seconds']:.1f}s)")
    return report


def build_backtest_report(folds: list[Fold], ks: tuple[int, ...], u: Uncertainty,
                          open_bandit: str | Path | None, data_dir: str | Path,
                          max_users: int | None) -> dict[str, Any]:
    """Pooled results (for_you in the main tables, every surface in the verdict and its own
    tables); segments, items and the fit record from the last fold."""
    window, results = pooled(folds)
    k = headline_k(ks)
    v = verdict(results, k, n_resamples=u.n_resamples, alpha=u.alpha, seed=u.seed)
    against = v["surfaces"]["for_you"]["best_baseline"]
    last = folds[-1]
    segs, notes = user_segmentations(last.rec, last.window, last.events)
    share = history_popularity(last.rec, last.start)
    meta = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_dir": str(data_dir), "max_users": max_users,
            "window_source": "backtest", "window_end": None if last.end is None
            else last.end.isoformat(),
            "folds": [{"start": f.start.isoformat(), "end": None if f.end is None
                       else f.end.isoformat(), "users": len(f.window.users),
                       "ndcg": {n: r.means()[f"ndcg@{k}"] for n, r in f.results["for_you"]
                                .items()}, "seconds": f.seconds} for f in folds],
            "segments_from": "the last fold" if len(folds) > 1 else "the window"}
    report = build_report(results["for_you"], window, ks=ks, against=against,
                          segmentations=segs if len(folds) == 1 else [],
                          segment_notes=notes, cold_warm=cold_warm_items(
                              last.rec, last.window, last.results["for_you"], k),
                          share=share, ope=off_policy_section(open_bandit, u.alpha),
                          bundle=fit_record(last.rec.report), meta=meta, uncertainty=u)
    if len(folds) > 1:   # segments describe one fold's shoppers: computed on the last
        report["segments"] = segment_section(last.results["for_you"], segs, k, against,
                                             u.alpha)
    report["verdict"] = v
    report["surfaces"] = {}
    for surface, by_model in results.items():
        headline, comparisons = intervals(by_model, k, against, u)
        report["surfaces"][surface] = {"headline": headline, "comparisons": comparisons,
                                       "metrics": {n: r.means() for n, r in by_model.items()}}
    cleaned: dict[str, Any] = json_safe(report)
    return cleaned


def _print_summary(report: dict[str, Any]) -> None:
    k = report["meta"]["headline_k"]
    for surface, data in report["surfaces"].items():
        print(f"[{surface}]")
        for name, values in data["headline"].items():
            parts = []
            for metric in (f"ndcg@{k}", f"recall@{k}", f"revenue_per_rec@{k}"):
                v = values.get(metric, {})
                if v.get("estimate") is None:
                    continue
                text = f"{metric}={v['estimate']:.4f}"
                if v.get("low") is not None:
                    text += f" [{v['low']:.4f}, {v['high']:.4f}]"
                parts.append(text)
            print(f"  {name:>14}: " + "; ".join(parts))


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


def evaluate_command(args: argparse.Namespace) -> None:
    """CLI wrapper: ``recsys evaluate --data DIR --report DIR [--cutoff T] [--folds N]
    [--config FILE] [--baselines ...] [--k 5,10,20] [--max-users N] [--seed S]
    [--resamples N] [--open-bandit DIR] [--workers N] [--quiet] [--progress]``."""
    evaluate(args.data, report_dir=args.report, config=load_train_config(args.config),
             cutoff=args.cutoff, folds=args.folds,
             baselines=(parse_list(args.baselines, "--baselines") if args.baselines is not None
                        else DEFAULT_BASELINES), ks=parse_ks(args.k),
             max_users=args.max_users, seed=args.seed, n_resamples=args.resamples,
             open_bandit=args.open_bandit or OPEN_BANDIT, workers=args.workers,
             progress=progress_wanted(quiet=args.quiet, force=args.progress), quiet=args.quiet)
