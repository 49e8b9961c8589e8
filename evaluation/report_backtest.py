"""The backtest's own sections of the HTML report: the verdict (first thing on the page), the
three surfaces side by side, the folds, and what each part of the fit saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluation.report_html_base import esc, fmt_value, table

SURFACE_TARGETS = {"for_you": "every purchase after the cutoff",
                   "buy_again": "re-purchases (items bought before the cutoff)",
                   "discover": "purchases of items new to the shopper"}


def verdict_html(report: Mapping[str, Any]) -> str:
    v = report.get("verdict")
    if not v:
        return '<p class="note">no verdict (not a backtest report)</p>'
    k = v["k"]
    rows = []
    for surface, sv in v["surfaces"].items():
        lift = sv["lifts"].get(f"ndcg@{k}", {})
        rev = sv["lifts"].get(f"revenue_per_rec@{k}", {})
        rows.append([
            f"<b>{esc(surface)}</b>", esc(sv["best"]), esc(sv.get("best_baseline") or "–"),
            _lift(lift, f"ndcg@{k}"), _lift(rev, f"revenue_per_rec@{k}")])
    pct = int(round(100 * (1 - v["alpha"])))
    return (f'<p class="verdict">{esc(v["sentence"])}</p>'
            + table(["surface", f"best by NDCG@{k}", "best baseline",
                     f"hybrid vs best baseline: NDCG@{k}", f"revenue per slot@{k}"], rows,
                    id_="verdict")
            + f'<p class="note">Lift = mean(hybrid) / mean(baseline) - 1 on the same shoppers, '
              f"with its {pct}% paired bootstrap interval; bold when the interval excludes "
              "0.</p>")


def _lift(lift: Mapping[str, Any], metric: str) -> str:
    if "lift" not in lift:
        return esc(lift.get("note", "–"))
    hybrid, baseline = fmt_value(metric, lift["hybrid"]), fmt_value(metric, lift["baseline"])
    text = (f'{esc(hybrid)} vs {esc(baseline)}: {lift["lift"]:+.1%} '
            f'[{lift["low"]:+.1%}, {lift["high"]:+.1%}]')
    return f"<b>{text}</b>" if lift["significant"] else text


def surfaces_html(report: Mapping[str, Any]) -> str:
    surfaces = report.get("surfaces") or {}
    if not surfaces:
        return '<p class="note">one surface only</p>'
    k = report["meta"]["headline_k"]
    out = []
    for surface, data in surfaces.items():
        measured = {m for values in data["metrics"].values() for m in values}
        cols = [c for c in (f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}", f"revenue_per_rec@{k}",
                            f"new_ndcg@{k}") if c in measured]
        rows = []
        for name, values in data["headline"].items():
            metrics = data["metrics"][name]
            cells = [esc(name)]
            for c in cols:
                v = values.get(c)
                if v is not None and v.get("low") is not None:
                    cells.append(f'{esc(fmt_value(c, v["estimate"]))} <span class="ci">'
                                 f'[{esc(fmt_value(c, v["low"]))}, '
                                 f'{esc(fmt_value(c, v["high"]))}]</span>')
                else:
                    cells.append(esc(fmt_value(c, metrics.get(c))))
            rows.append(cells)
        out.append(f"<h3>{esc(surface)}</h3><p class=\"note\">scored on "
                   f"{esc(SURFACE_TARGETS.get(surface, surface))}; new_ndcg counts items new "
                   "to the shopper only</p>" + table(["model", *(esc(c) for c in cols)], rows))
    return "".join(out)


def folds_html(report: Mapping[str, Any]) -> str:
    folds = report["meta"].get("folds") or []
    if not folds:
        return ""
    models = list(folds[0]["ndcg"])
    k = report["meta"]["headline_k"]
    rows = [[esc(f["start"]), esc(f["end"] or "end of data"), f'{f["users"]:,}',
             *(esc(fmt_value(f"ndcg@{k}", f["ndcg"].get(m))) for m in models),
             esc(f'{sum(f["seconds"].values()):.0f} s')] for f in folds]
    return ("<h3>folds</h3>" + table(["cutoff", "window end", "shoppers",
                                      *(f"{esc(m)} ndcg@{k}" for m in models), "time"], rows)
            + f'<p class="note">Each fold fits on every event before its cutoff. Segments '
              f'come from {esc(report["meta"].get("segments_from", "the window"))}.</p>')


def spans_html(report: Mapping[str, Any]) -> str:
    """What each part of the (last fold's) fit saw."""
    data = (report.get("bundle") or {}).get("data") or {}
    spans = data.get("spans") or {}
    if not spans:
        return '<p class="note">no fit record</p>'
    rows = [[esc(name), esc(s.get("start")), esc(s.get("end")), f'{s.get("events", 0):,}']
            for name, s in spans.items()]
    return (f'<p>holdout from <b>{esc(data.get("holdout_start"))}</b>: early stopping and the '
            "rankers' training window; the served parts were then fitted on every event.</p>"
            + table(["part", "from", "to (exclusive)", "events"], rows))
