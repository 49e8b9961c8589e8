"""Render the report dict (:func:`evaluation.report.build_report`) as one self-contained HTML page.

No external assets, no script: CSS is inline and figures are inline SVG (:mod:`evaluation.plots`),
so the file can be mailed or archived and opens the same anywhere. Every piece of text that
comes from data, config or the manifest goes through :func:`html.escape`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evaluation import plots
from evaluation.report_backtest import folds_html, spans_html, surfaces_html, verdict_html
from evaluation.report_html_base import CSS, esc, fmt_value, table
from evaluation.report_html_base import signed as _signed

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ranking, all purchased items", ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")),
    ("ranking, new-to-user items", ("new_precision", "new_recall", "new_ndcg", "new_map",
                                    "new_mrr", "new_hit_rate")),
    ("business", ("ctr", "conversion", "purchase_precision", "revenue_per_rec",
                  "revenue_per_user", "aov")),
    ("beyond accuracy", ("ild_category", "ild_embedding", "novelty", "serendipity",
                         "mean_popularity", "coverage", "gini")),
)
NOTES = {
    "ctr": "proxy: recommended items the user then interacted with / items shown",
    "aov": "pooled: attributed revenue / attributed orders",
    "novelty": "bits, -log2 p(i), p = share of users who had interacted with the item",
    "serendipity": "relevant and not in the popularity baseline's list, / k",
    "mean_popularity": "p(i) of recommended items: share of users who had interacted",
    "coverage": "share of the catalogue recommended to anyone",
    "gini": "concentration of exposure over the catalogue (0 = equal)",
    "ild_embedding": "1 - cosine of content embeddings, mean over pairs",
    "ild_category": "share of item pairs from different categories",
}

def _figure(svg: str | None, what: str) -> str:
    if svg is None:
        return f'<p class="note">{esc(what)}: figure unavailable (matplotlib not installed).</p>'
    return f"<figure>{svg}</figure>"


def _summary(report: Mapping[str, Any]) -> str:
    meta = report["meta"]
    k, against = meta["headline_k"], meta.get("against")
    cols = [c for c in next(iter(report["headline"].values()), {})]
    rows = []
    for name, values in report["headline"].items():
        cells = [esc(name) + (' <span class="note">(reference)</span>' if name == against
                              else "")]
        for c in cols:
            v = values.get(c, {})
            cell = esc(fmt_value(c, v.get("estimate")))
            if v.get("low") is not None:
                cell += (f' <span class="ci">[{esc(fmt_value(c, v["low"]))}, '
                         f'{esc(fmt_value(c, v["high"]))}]</span>')
            cmp = report["comparisons"].get(name, {}).get(c)
            if cmp is not None:
                cls = "cmp" + ("" if cmp["significant"] else " ns") + (
                    " neg" if cmp["diff"] < 0 and cmp["significant"] else "")
                tag = "" if cmp["significant"] else ' <span class="tag">n.s.</span>'
                cell += (f'<span class="{cls}">{esc(_signed(c, cmp["diff"]))} '
                         f'[{esc(_signed(c, cmp["low"]))}, {esc(_signed(c, cmp["high"]))}] '
                         f'p={cmp["p_value"]:.3g}{tag}</span>')
            cells.append(cell)
        rows.append(cells)
    pct = int(round(100 * (1 - meta["alpha"])))
    text = (f'<p class="note">Mean over {meta["users"]:,} users with {pct}% percentile '
            f'bootstrap intervals ({meta["n_resamples"]:,} resamples over users, seed '
            f'{meta["seed"]}). ')
    if against:
        text += (f"The second line is the paired difference against <b>{esc(against)}</b> on "
                 f"the same users, its {pct}% interval and bootstrap p-value; <b>n.s.</b> marks "
                 "a difference that is not significant (the smallest p-value "
                 f"{meta['n_resamples']:,} resamples can give is "
                 f"{1 / (meta['n_resamples'] + 1):.2g}). ")
    text += f"Coverage@{k} is one catalogue-level number, without an interval.</p>"
    return (table(["model", *(esc(c) for c in cols)], rows, id_="summary") + text
            + _figure(plots.interval_plot(report["headline"],
                                          [c for c in cols if not c.startswith("coverage")]),
                      "intervals"))


def _metric_tables(report: Mapping[str, Any]) -> str:
    out = []
    models = list(report["metrics"])
    tests = report.get("tests", {})
    against = report["meta"].get("against")
    for k in report["meta"]["ks"]:
        rows = []
        for group, names in GROUPS:
            rows.append([f"<b>{esc(group)}</b>"] + [""] * len(models))
            for base in names:
                key = f"{base}@{k}"
                if not any(key in report["metrics"][name] for name in models):
                    continue   # not measured (revenue without prices)
                cells = [esc(key) + (f' <span class="note">{esc(NOTES[base])}</span>'
                                     if base in NOTES else "")]
                for name in models:
                    value = report["metrics"][name].get(key)
                    t = tests.get(name, {}).get(key)
                    cell = esc(fmt_value(key, value))
                    if t is not None and not t["significant"]:
                        cell = f'<span class="ns">{cell} n.s.</span>'
                    cells.append(cell)
                rows.append(cells)
        out.append(f"<h3>at k = {k}</h3>" + table(["metric", *(esc(m) for m in models)], rows))
    note = (f'<p class="note"><b>n.s.</b>: not significantly different from {esc(against)} '
            "(paired t-test on the same users, alpha = "
            f'{report["meta"]["alpha"]}).</p>') if against else ""
    return note + "".join(out)


def _bias(report: Mapping[str, Any]) -> str:
    bias = report["popularity_bias"]
    k = bias["k"]
    rows = [[esc(name), esc(fmt_value("share", bias["head_share"].get(name))),
             esc(fmt_value("share", bias["mean_popularity"].get(name)))]
            for name in bias["head_share"]]
    ks = report["meta"]["ks"]
    cov_rows = [[esc(name)] + [esc(fmt_value(f"{m}@{kk}", report["metrics"][name].get(
        f"{m}@{kk}"))) for kk in ks for m in ("coverage", "gini")]
        for name in report["metrics"]]
    cov_head = ["model"] + [f"{m}@{kk}" for kk in ks for m in ("coverage", "gini")]
    return (_figure(plots.popularity_bias(bias), "popularity bias")
            + '<p class="note">Items are ranked by popularity p(i), the share of users who had '
            "interacted with the item before the window, and cut into ten equal-count bins. A "
            "model on the dashed line recommends in proportion to past demand; above it in the "
            f"first bins, it concentrates on best-sellers. Slots at k = {k}. The catalogue row "
            "weighs items by their past interactions; an unweighted catalogue item has mean "
            f"p(i) = {esc(fmt_value('share', bias.get('catalog_item_mean')))}.</p>"
            + table(["", "share of slots in the top-20% items", "mean p(i) of a slot"], rows)
            + "<h3>coverage and concentration</h3>"
            + table([esc(h) for h in cov_head], cov_rows))


def _segments(report: Mapping[str, Any]) -> str:
    out = []
    against = report["meta"].get("against")
    for name, seg in report["segments"].items():
        rows = []
        metrics: list[str] = []
        for entry in seg["rows"]:
            models = list(entry["metrics"])
            metrics = metrics or list(next(iter(entry["metrics"].values()), {}))
            for i, model in enumerate(models):
                cells = [esc(entry["segment"]) if i == 0 else "",
                         f'{entry["users"]:,}' if i == 0 else "", esc(model)]
                for m in metrics:
                    value = entry["metrics"][model].get(m)
                    cell = esc(fmt_value(m, value))
                    t = entry["tests"].get(model, {}).get(m)
                    if value is not None and t is not None and (
                            not t.get("tested") or not t["significant"]):
                        cell = f'<span class="ns">{cell} n.s.</span>'
                    elif t is not None and t.get("tested"):
                        mark = "" if t.get("significant_adjusted") else " (n.s. after BH)"
                        cell += (f'<span class="cmp">p={t["p_value"]:.2g}, BH '
                                 f'{t["p_adjusted"]:.2g}{mark}</span>')
                    cells.append(cell)
                rows.append(cells)
        out.append(f"<h3>{esc(name)}</h3><p class=\"note\">{esc(seg['note'])}</p>"
                   + table(["segment", "users", "model", *(esc(m) for m in metrics)], rows,
                           left=3))
    for note in report.get("segment_notes", []):
        out.append(f'<p class="note">{esc(note)}</p>')
    intro = ('<p class="note">Each segmentation splits the window users into disjoint groups; '
             "user counts add up to the total. ")
    if against:
        intro += (f"<b>n.s.</b>: not significantly different from {esc(against)} within the "
                  f"segment (paired t-test; segments under 10 users are not tested). Beside "
                  "each significant cell: its raw p-value and the Benjamini-Hochberg adjusted "
                  "one over the whole table (a table runs dozens of tests, so some raw "
                  "p-values fall under 0.05 by chance).")
    return intro + "</p>" + "".join(out)


def _items(report: Mapping[str, Any]) -> str:
    items = report.get("items") or {}
    if not items:
        return '<p class="note">not computed</p>'
    k = items["k"]
    cols = [f"cold_recall@{k}", f"cold_hit_rate@{k}", f"warm_recall@{k}", f"warm_hit_rate@{k}"]
    rows = [[esc(name), *(esc(fmt_value(c, v.get(c))) for c in cols)]
            for name, v in items["models"].items()]
    return (f'<p class="note">Relevant items are split by whether they had training events. '
            f'Cold: {items["cold_relevant_items"]:,} purchased items over '
            f'{items["users_with_cold"]:,} users; warm: {items["warm_relevant_items"]:,} over '
            f'{items["users_with_warm"]:,} users. Users without items of a kind are left out of '
            "that kind's mean.</p>" + table(["model", *(esc(c) for c in cols)], rows))


def _ope(report: Mapping[str, Any]) -> str:
    ope = report.get("ope") or {}
    if ope.get("status") != "ok":
        return f'<p class="warn">{esc(ope.get("note", "not run"))}</p>'

    def ci(row: Mapping[str, Any], name: str, low: str, high: str) -> str:
        return (f'{row[name]:.5f} <span class="ci">[{row[low]:.5f}, {row[high]:.5f}]'
                "</span>")
    rows = [[esc(r["campaign"]), f'{r["n_items"]}',
             ci(r, "observed_ctr", "observed_low", "observed_high"),
             ci(r, "ips", "ips_low", "ips_high"), ci(r, "snips", "snips_low", "snips_high"),
             f'{r["ess"]:,.0f}', f'{r["max_weight"]:,.0f}',
             "yes" if r["within"] else "<b>no</b>", "yes" if r["consistent"] else "<b>no</b>"]
            for r in ope["rows"]]
    return (f'<p class="note">{esc(ope["scope"])}</p>'
            + table(["campaign", "items", "observed CTR (random logs)", "IPS", "SNIPS", "ESS",
                     "max w", "strict: SNIPS in observed CI",
                     "consistent: observed in SNIPS CI"], rows)
            + f'<p class="warn">{esc(ope["note"])}</p>')


def _training(report: Mapping[str, Any]) -> str:
    bundle = report.get("bundle") or {}
    curves = dict(bundle.get("curves") or {})
    rankers = bundle.get("rankers") or {}
    best = dict(bundle.get("best_iteration") or {})
    for surface, ranker in rankers.items():
        if ranker.get("history"):
            curves[f"ranker {surface}"] = ranker["history"]
            best[f"ranker {surface}"] = ranker.get("best_iteration")
    parts = [_figure(plots.learning_curves(curves, best), "learning curves"),
             '<p class="note">Metrics per iteration or epoch as recorded at '
             "training on the holdout (train loss dashed, right axis); the dotted line marks "
             "the iteration kept (the served parts are then refitted on every event for as "
             "many).</p>"]
    valid = bundle.get("valid_metrics") or {}
    if valid:
        keys = sorted({m for v in valid.values() for m in v})
        parts.append(table(["model", *(f"holdout {esc(m)}" for m in keys), "best iteration"],
                           [[esc(n), *(esc(fmt_value(m, v.get(m))) for m in keys),
                             esc(bundle.get("best_iteration", {}).get(n) or "–")]
                            for n, v in valid.items()]))
    for surface, ranker in rankers.items():
        info = {k: v for k, v in ranker.items() if k not in ("history", "importances")}
        parts.append(f"<h3>ranker: {esc(surface)}</h3><pre>"
                     + esc(json.dumps(info, indent=2)) + "</pre>")
        imp = sorted((ranker.get("importances") or {}).items(), key=lambda kv: -kv[1])[:15]
        if imp:
            parts.append(table(["feature", "gain"], [[esc(f), f"{g:,.1f}"] for f, g in imp]))
    return "".join(parts)


def _header(report: Mapping[str, Any]) -> str:
    meta = report["meta"]
    rows = [
        ("data", meta.get("data_dir", "?")),
        ("backtest", f'fitted on every event before {meta.get("window_start")}, scored on '
                     f'purchases until {meta.get("window_end") or "the end of the data"}'
                     + (f' ({len(meta["folds"])} folds)' if len(meta.get("folds", [])) > 1
                        else "")),
        ("users", f'{meta["users"]:,} shoppers with history who bought after the cutoff'
                  + (f', sampled with seed {meta["seed"]}' if meta.get("max_users") else "")),
        ("models", ", ".join(meta["models"])),
        ("k", ", ".join(str(k) for k in meta["ks"])),
        ("generated", f'{meta.get("generated_at", "")} in {meta.get("seconds", "?")} s'),
    ]
    out = ('<table id="meta"><tbody>' + "".join(
        f"<tr><th class=\"l\">{esc(a)}</th><td class=\"l\">{esc(b)}</td></tr>" for a, b in rows)
        + "</tbody></table>")
    out += "".join(f'<p class="note">{esc(note)}</p>' for note in meta.get("notes", []))
    if meta.get("warnings"):
        out += ('<div class="warn"><b>Warnings</b><ul>'
                + "".join(f"<li>{esc(w)}</li>" for w in meta["warnings"]) + "</ul></div>")
    return out


SECTIONS: tuple[tuple[str, str], ...] = (
    ("verdict", "Verdict"), ("surfaces", "Surfaces"), ("summary", "for_you in detail"),
    ("metrics", "All metrics"), ("curves", "Metrics by k"),
    ("beyond", "Popularity bias and coverage"), ("segments", "Segments"),
    ("items", "Cold and warm items"), ("ope", "Off-policy validation"),
    ("training", "Learning curves"), ("data", "Data"), ("config", "Config"),
)


def render(report: Mapping[str, Any]) -> str:
    """The whole page as a string (UTF-8, no external references)."""
    body = {
        "verdict": verdict_html(report),
        "surfaces": surfaces_html(report) + folds_html(report),
        "summary": _summary(report),
        "metrics": _metric_tables(report),
        "curves": _figure(plots.metric_curves(report["metrics"], report["meta"]["ks"]),
                          "metric@k curves"),
        "beyond": _bias(report),
        "segments": _segments(report),
        "items": _items(report),
        "ope": _ope(report),
        "training": _training(report),
        "data": spans_html(report),
        "config": "<pre>" + esc(json.dumps((report.get("bundle") or {}).get("config", {}),
                                           indent=2, sort_keys=True)) + "</pre>",
    }
    nav = "".join(f'<a href="#sec-{sid}">{esc(title)}</a>' for sid, title in SECTIONS)
    sections = "".join(f'<section id="sec-{sid}"><h2>{esc(title)}</h2>{body[sid]}</section>'
                       for sid, title in SECTIONS)
    title = "Backtest report"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{_header(report)}<nav>{nav}</nav>{sections}"
            "</body></html>\n")
