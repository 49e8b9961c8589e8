"""The offline evaluation report: one JSON-able dict, written as metrics.json, summary.md and a
self-contained report.html.

:func:`build_report` turns the per-user results of :func:`~evaluation.offline.evaluate_pipelines`
into the report dict: means at every k, seeded bootstrap CIs and paired tests for the headline
metrics, per-segment tables, cold/warm items, popularity bias, the off-policy validation and the
record of the (last fold's) fit (spans, config, learning curves). Everything the HTML shows is in
that dict, so ``metrics.json`` alone can re-render the page
(:func:`evaluation.report_html.render`).

Example::

    report = build_report(results, window, against="popularity", ...)
    paths = write_report(report, "runs/eval")   # report.html, metrics.json, summary.md
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.bootstrap import bootstrap_ci, paired_test
from evaluation.business import NO_PRICES
from evaluation.offline import ORDERS, EvalWindow, ModelResult
from evaluation.segments import Segmentation, segment_table
from recsys.errors import DataError

# per-user headline metrics (CIs and bootstrap paired tests at the headline k); coverage is
# shown beside them without an interval (it is one number for the whole catalogue)
HEADLINE: tuple[str, ...] = ("ndcg", "recall", "hit_rate", "revenue_per_rec", "conversion")
HEADLINE_CATALOG: tuple[str, ...] = ("coverage",)
STRICT_OPE_NOTE = (
    "The strict check (the SNIPS point estimate inside the observed CTR's 95% CI) is not a "
    "usable acceptance test on these 10,000-row samples: the Bernoulli-TS weights are "
    "heavy-tailed (effective sample size 2-656), so an unbiased estimate usually lands outside "
    "the narrow observed interval; a simulation puts the chance of passing all three campaigns "
    "at about 0.7%. The weaker consistency check (the observed CTR inside SNIPS's own CI) is "
    "the one to read. See docs/metrics.md, 'Off-policy evaluation'.")


@dataclass(frozen=True)
class Uncertainty:
    """How the intervals and tests are computed (seeded, so a report is reproducible)."""

    alpha: float = 0.05
    n_resamples: int = 2000
    seed: int = 0


def headline_k(ks: Sequence[int]) -> int:
    """10 when evaluated, else the largest k."""
    return 10 if 10 in ks else max(ks)


def json_safe(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


def headline_metrics(results: Mapping[str, ModelResult], k: int) -> list[str]:
    """The :data:`HEADLINE` metrics at ``k`` that were measured (no revenue without prices)."""
    return [f"{m}@{k}" for m in HEADLINE
            if all(f"{m}@{k}" in r.per_user for r in results.values())]


def intervals(results: Mapping[str, ModelResult], k: int, against: str | None,
              u: Uncertainty) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bootstrap CI of each headline metric per model, and each model's bootstrap paired test
    against ``against`` (diff = model - against)."""
    headline: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    measured = [m.split("@")[0] for m in headline_metrics(results, k)]
    for name, r in results.items():
        headline[name] = {}
        for m in measured:
            values = r.per_user[f"{m}@{k}"]
            try:
                ci = bootstrap_ci(values, n_resamples=u.n_resamples, alpha=u.alpha, seed=u.seed)
                headline[name][f"{m}@{k}"] = {"estimate": ci.estimate, "low": ci.low,
                                              "high": ci.high, "n": ci.n}
            except DataError:   # fewer than 2 users with a value
                headline[name][f"{m}@{k}"] = {"estimate": r.means().get(f"{m}@{k}"),
                                              "low": None, "high": None, "n": 0}
        for m in HEADLINE_CATALOG:
            headline[name][f"{m}@{k}"] = {"estimate": r.catalog[f"{m}@{k}"]}
        if against is None or name == against or against not in results:
            continue
        comparisons[name] = {}
        for m in measured:
            key = f"{m}@{k}"
            try:
                t = paired_test(r.per_user[key], results[against].per_user[key],
                                method="bootstrap", n_resamples=u.n_resamples, alpha=u.alpha,
                                seed=u.seed)
            except DataError:
                continue
            comparisons[name][key] = {"diff": t.diff, "low": t.low, "high": t.high,
                                      "p_value": t.p_value, "significant": t.significant,
                                      "n": t.n, "method": t.method}
    return headline, comparisons


def quick_tests(results: Mapping[str, ModelResult], against: str | None,
                alpha: float) -> dict[str, Any]:
    """Paired t-test of every per-user metric at every k against ``against``: marks the
    non-significant differences in the full tables (closed form, so cheap for all metrics)."""
    out: dict[str, Any] = {}
    if against is None or against not in results:
        return out
    base = results[against].per_user
    for name, r in results.items():
        if name == against:
            continue
        out[name] = {}
        for key, values in r.per_user.items():
            if key.startswith(ORDERS) or key not in base:
                continue
            try:
                t = paired_test(values, base[key], method="t", alpha=alpha)
            except DataError:
                continue
            out[name][key] = {"diff": t.diff, "p_value": t.p_value, "significant": t.significant}
    return out


def popularity_bias(results: Mapping[str, ModelResult], share: np.ndarray, k: int,
                    n_bins: int = 10) -> dict[str, Any]:
    """Recommended vs catalogue popularity. Items are ranked by p(i) and cut into ``n_bins``
    equal-count bins (bin 1 = the most popular 10%); per bin, the share of past interactions
    (the catalogue's popularity) and each model's share of recommendation slots at ``k``."""
    n = len(share)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-share, kind="stable")] = np.arange(n)
    bin_of = np.minimum(rank * n_bins // max(n, 1), n_bins - 1)
    total = share.sum()
    catalog = np.bincount(bin_of, weights=share, minlength=n_bins) / (total if total else 1)
    head = rank < max(1, int(round(0.2 * n)))
    out: dict[str, Any] = {
        "k": k,
        "bins": [f"{100 * b // n_bins}-{100 * (b + 1) // n_bins}%" for b in range(n_bins)],
        "catalog": catalog.tolist(),
        "models": {},
        "head_share": {"catalogue": float(share[head].sum() / total) if total
                       else float("nan")},
        # interaction-weighted: the popularity of the item behind a typical past interaction
        "mean_popularity": {"catalogue": float((share ** 2).sum() / total) if total
                            else float("nan")},
        "catalog_item_mean": float(share.mean()),
    }
    for name, r in results.items():
        top = r.lists[k]
        shown = top[top >= 0]
        counts = np.bincount(bin_of[shown], minlength=n_bins)
        out["models"][name] = (counts / max(len(shown), 1)).tolist()
        out["head_share"][name] = float(head[shown].mean()) if len(shown) else float("nan")
        out["mean_popularity"][name] = float(share[shown].mean()) if len(shown) else float("nan")
    return out


def build_report(results: Mapping[str, ModelResult], window: EvalWindow, *,
                 ks: Sequence[int], against: str | None, segmentations: Sequence[Segmentation],
                 segment_notes: Sequence[str] = (), cold_warm: Mapping[str, Any] | None = None,
                 share: np.ndarray, ope: Mapping[str, Any] | None = None,
                 bundle: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                 uncertainty: Uncertainty | None = None) -> dict[str, Any]:
    """Assemble the report dict (JSON-safe: NaN becomes null). See the module docstring."""
    u = uncertainty or Uncertainty()
    ks = sorted(set(ks))
    k = headline_k(ks)
    headline, comparisons = intervals(results, k, against, u)
    segments = segment_section(results, segmentations, k, against, u.alpha)
    warnings = [w for r in results.values() for w in r.warnings]
    notes = list((meta or {}).get("notes", [])) + ([] if window.priced else [NO_PRICES])
    report = {
        "meta": {**(meta or {}), "ks": ks, "headline_k": k, "models": list(results),
                 "prices": window.priced, "notes": notes,
                 "against": against, "users": len(window.users),
                 "returning_share": float(window.returning.mean()) if len(window.users) else 0.0,
                 "window_start": window.start.isoformat(),
                 "alpha": u.alpha, "n_resamples": u.n_resamples, "seed": u.seed,
                 "recommend_seconds": {n: round(r.seconds, 2) for n, r in results.items()},
                 "warnings": list((meta or {}).get("warnings", [])) + warnings},
        "metrics": {name: r.means() for name, r in results.items()},
        "headline": headline,
        "comparisons": comparisons,
        "tests": quick_tests(results, against, u.alpha),
        "segments": segments,
        "segment_notes": list(segment_notes),
        "items": dict(cold_warm or {}),
        "popularity_bias": popularity_bias(results, share, k),
        "ope": dict(ope or {"status": "skipped", "note": "not run"}),
        "bundle": dict(bundle or {}),
    }
    cleaned: dict[str, Any] = json_safe(report)
    return cleaned


def segment_section(results: Mapping[str, ModelResult], segmentations: Sequence[Segmentation],
                    k: int, against: str | None, alpha: float) -> dict[str, Any]:
    """Per segmentation: its note and one row per segment (headline metrics at ``k``)."""
    metrics = headline_metrics(results, k)
    return {seg.name: {"note": seg.note,
                       "rows": segment_table(results, seg, metrics, against=against,
                                             alpha=alpha)}
            for seg in segmentations}


def off_policy_section(root: str | Path | None, alpha: float = 0.05) -> dict[str, Any]:
    """Run :func:`evaluation.ope.validate_uniform_from_bts` on the Open Bandit sample at
    ``root`` and describe the outcome honestly; skipped with a note when the data is absent."""
    from evaluation.ope import validate_uniform_from_bts

    if root is None:
        return {"status": "skipped", "note": "off-policy validation not requested."}
    if not (Path(root) / "bts").is_dir():
        return {"status": "skipped",
                "note": f"Open Bandit sample not found at {root}; off-policy validation skipped "
                        "(it needs shared/datasets/open_bandit)."}
    try:
        table = validate_uniform_from_bts(root, alpha=alpha)
    except (DataError, OSError, ValueError) as exc:
        return {"status": "error", "note": f"off-policy validation failed: {exc}"}
    strict = int(table["within"].sum())
    consistent = int(table["consistent"].sum())
    n = len(table)
    note = (f"Strict check (SNIPS inside the observed CI): {strict}/{n} campaigns pass. "
            f"Consistency check (observed CTR inside the SNIPS CI): {consistent}/{n} pass. ")
    if strict < n:
        note += STRICT_OPE_NOTE
    return {"status": "ok", "root": str(root), "alpha": alpha,
            "strict_passed": strict, "consistent_passed": consistent, "campaigns": n,
            "note": note, "scope": "This validates the off-policy estimators on public bandit "
            "logs (ZOZOTOWN, Open Bandit Dataset); it does not score this bundle, whose items "
            "are not in those logs.",
            "rows": table.to_dict(orient="records")}


def _backtest_line(meta: Mapping[str, Any]) -> str:
    """What the backtest was: its cutoff(s), folds and shoppers."""
    folds = meta.get("folds") or [{"start": meta.get("window_start"),
                                   "end": meta.get("window_end")}]
    end = folds[-1].get("end") or "the end of the data"
    sampled = f" (at most {meta['max_users']:,} per fold)" if meta.get("max_users") else ""
    if len(folds) == 1:
        what = (f"1 fold, cutoff {folds[0]['start']}: fitted on every event before it, scored "
                f"on purchases from it until {end}")
    else:
        what = (f"{len(folds)} folds, cutoffs {', '.join(str(f['start']) for f in folds)}: each "
                f"fitted on every event before its cutoff, scored on purchases until the next "
                f"(the last until {end})")
    return (f"- backtest: {what}; {meta['users']:,} shoppers with history who bought after the "
            f"cutoff{sampled}")


def markdown_summary(report: Mapping[str, Any]) -> str:
    """The verdict, what the backtest was, and the headline table (estimate [CI], difference vs
    the reference, p-value) in Markdown."""
    from evaluation.report_html_base import fmt_value

    meta = report["meta"]
    k = meta["headline_k"]
    against = meta.get("against")
    shown = {c for values in report["headline"].values() for c in values}
    cols = [f"{m}@{k}" for m in (*HEADLINE, *HEADLINE_CATALOG) if f"{m}@{k}" in shown]
    verdict = (report.get("verdict") or {}).get("sentence", "No verdict (not a backtest).")
    lines = [
        "# Backtest summary", "", f"**{verdict}**", "",
        _backtest_line(meta),
        f"- data: `{meta.get('data_dir', '?')}`",
        f"- {int(100 * (1 - meta['alpha']))}% bootstrap CIs over shoppers "
        f"({meta['n_resamples']} resamples, seed {meta['seed']})",
    ]
    if against:
        lines.append(f"- differences are paired bootstrap tests against `{against}`; "
                     "**n.s.** = not significant")
    lines += ["", "The `for_you` surface (scored on every purchase after the cutoff):",
              "", "| model | " + " | ".join(cols) + " |",
              "|---|" + "---|" * len(cols)]
    for name, values in report["headline"].items():
        cells = []
        for c in cols:
            v = values.get(c, {})
            cell = fmt_value(c, v.get("estimate"))
            if v.get("low") is not None:
                cell += f" [{fmt_value(c, v['low'])}, {fmt_value(c, v['high'])}]"
            cmp = report["comparisons"].get(name, {}).get(c)
            if cmp is not None:
                sign = "+" if cmp["diff"] >= 0 else ""
                cell += f"; {sign}{fmt_value(c, cmp['diff'])} p={cmp['p_value']:.3g}"
                if not cmp["significant"]:
                    cell += " **n.s.**"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ope = report.get("ope", {})
    lines += ["", f"Off-policy validation: {ope.get('note', 'not run')}"]
    if meta.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in meta["notes"]]
    if meta.get("warnings"):
        lines += ["", "Warnings:"] + [f"- {w}" for w in meta["warnings"]]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, metrics.json and summary.md into ``out_dir``; return their paths."""
    from evaluation.report_html import render

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "json": out / "metrics.json",
             "markdown": out / "summary.md"}
    paths["json"].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    paths["markdown"].write_text(markdown_summary(report))
    paths["html"].write_text(render(report), encoding="utf-8")
    return paths


def frame(report: Mapping[str, Any], k: int | None = None) -> pd.DataFrame:
    """All mean metrics at ``k`` (default: the headline k) as a models x metrics DataFrame."""
    k = k or report["meta"]["headline_k"]
    rows = {name: {m.split("@")[0]: v for m, v in values.items() if m.endswith(f"@{k}")}
            for name, values in report["metrics"].items()}
    return pd.DataFrame.from_dict(rows, orient="index")
