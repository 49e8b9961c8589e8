"""Present an experiment readout (:func:`evaluation.experiment_readout.build_readout`): one
self-contained HTML page (inline CSS, inline SVG charts drawn here: no matplotlib, no script,
no external reference, every data string escaped), ``readout.json`` beside it
(:func:`write_report`), and a few lines for a terminal (:func:`summary_lines`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluation.report_html_base import CSS, esc, table

RATES = ("ctr", "add_to_cart_rate", "conversion_rate")
MONEY = ("revenue", "revenue_per_unit", "aov")
METRIC_TITLES = {
    "ctr": "CTR (clicks / impressions)", "add_to_cart_rate": "add-to-cart rate (units)",
    "conversion_rate": "conversion rate (units)", "revenue_per_unit": "revenue per unit",
    "aov": "AOV (revenue / orders)",
}
COUNT_ROWS = ("units", "exposures", "impressions", "clicks", "carts", "purchases", "orders",
              "revenue")
GUARD_CLASS = {"failed": "bad", "passed": "ok"}
EXTRA_CSS = """
.ok{color:#166534;font-weight:600}.bad{color:#991b1b;font-weight:600}.note{color:#555}
svg.chart{max-width:100%;height:auto;font-size:11px}
"""


def fmt(metric: str, value: float | None) -> str:
    """A value for display: money with 2 decimals, rates with 4, counts with separators."""
    if value is None:
        return "–"
    if metric in MONEY:
        return f"{value:,.2f}"
    if metric in COUNT_ROWS or float(value).is_integer() and metric not in RATES:
        return f"{value:,.0f}"
    return f"{value:.4f}"


def _signed(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return ("+" if value >= 0 else "") + fmt(metric, value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"


def _interval(low: float | None, high: float | None, metric: str, pct: bool = False) -> str:
    if low is None or high is None:
        return '<span class="ci">[–]</span>'
    if low > high:
        return '<span class="ci">empty</span>'
    show = _pct if pct else (lambda v: _signed(metric, v))
    return f'<span class="ci">[{esc(show(low))}, {esc(show(high))}]</span>'


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 1e-300" if value == 0 else f"{value:.3g}"


# ---------------------------------------------------------------------- the chart
def lift_chart(looks: Sequence[Mapping[str, Any]], *, metric: str, ident: str,
               width: int = 680, height: int = 250) -> str:
    """Cumulative difference (treatment - control) per daily look, with the always-valid
    confidence sequence as a band and the fixed-horizon 95% interval as dashed lines."""
    n = len(looks)
    diff = [lk.get("diff") for lk in looks]
    ci_lo, ci_hi = [lk.get("ci_low") for lk in looks], [lk.get("ci_high") for lk in looks]
    cs_lo, cs_hi = [lk.get("cs_low") for lk in looks], [lk.get("cs_high") for lk in looks]
    core = [v for v in (*diff, *ci_lo, *ci_hi) if v is not None and math.isfinite(v)]
    if not core:
        return '<p class="note">No look has data yet.</p>'
    lo, hi = min(*core, 0.0), max(*core, 0.0)
    pad = (hi - lo) * 0.25 or abs(hi) * 0.5 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 70, 12, 14, 42
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph * (hi - min(max(v, lo), hi)) / (hi - lo)

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="cumulative lift of {esc(metric)} by day">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" '
             'stroke="#ccc"/>']
    # always-valid band over each run of consecutive looks where it is finite
    runs: list[list[tuple[int, float, float]]] = []
    for i, (low, high) in enumerate(zip(cs_lo, cs_hi, strict=True)):
        if low is None or high is None or low > high:   # not ready yet, or empty
            continue
        if runs and runs[-1][-1][0] == i - 1:
            runs[-1].append((i, low, high))
        else:
            runs.append([(i, low, high)])
    for run in runs:
        if len(run) == 1:
            i, low, high = run[0]
            parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(low):.1f}" '
                         f'y2="{y(high):.1f}" stroke="#93c5fd" stroke-width="6"/>')
            continue
        upper = [f"{x(i):.1f},{y(high):.1f}" for i, _, high in run]
        lower = [f"{x(i):.1f},{y(low):.1f}" for i, low, _ in reversed(run)]
        parts.append(f'<polygon points="{" ".join(upper + lower)}" fill="#bfdbfe" '
                     'fill-opacity="0.8"/>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" '
                 'stroke="#555" stroke-width="1"/>')
    for series, style in ((ci_lo, 'stroke="#d97706" stroke-dasharray="4 3"'),
                          (ci_hi, 'stroke="#d97706" stroke-dasharray="4 3"'),
                          (diff, 'stroke="#1d4ed8" stroke-width="2"')):
        pts = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series) if v is not None]
        if len(pts) > 1:
            parts.append(f'<polyline points="{" ".join(pts)}" fill="none" {style}/>')
    for i, v in enumerate(diff):
        if v is not None:
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="#1d4ed8"/>')
    for k in range(5):   # y ticks
        v = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                     f'{esc(_tick(v))}</text>')
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):   # x ticks: month-day of the look
        label = str(looks[i].get("day") or "")[5:10]
        parts.append(f'<text x="{x(i):.1f}" y="{top + ph + 16}" text-anchor="middle">'
                     f'{esc(label)}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">day of look (UTC); blue: difference, '
                 'band: always-valid CS, dashed: fixed-horizon 95% CI</text>')
    parts.append("</svg>")
    return f'<figure id="{esc(ident)}">' + "".join(parts) + "</figure>"


def _tick(v: float) -> str:
    a = abs(v)
    return f"{v:.2f}" if a >= 1 else f"{v:.4f}" if a >= 1e-3 or a == 0 else f"{v:.1e}"


# ---------------------------------------------------------------------- sections
def _header(r: Mapping[str, Any]) -> str:
    srm = r.get("srm")
    srm_text = ("–" if srm is None else
                f'<span class="{"bad" if srm["mismatch"] else "ok"}">'
                f'{"MISMATCH" if srm["mismatch"] else "ok"}</span> (p = {_p(srm["p_value"])})')
    g = r["guardrails"]["status"]
    rows = [
        ("experiment", esc(r["experiment"])), ("control", esc(r["control"])),
        ("variants", esc(", ".join(f'{v["name"]} ({v["weight"]:g})' for v in r["variants"]))),
        ("period", esc(f'{r["period"]["start"]} .. {r["period"]["end"]} '
                       f'({r["period"]["days"]} day(s))')),
        ("sample ratio", srm_text),
        ("guardrails", f'<span class="{GUARD_CLASS.get(g, "note")}">{esc(g)}</span>'),
        ("alpha", esc(r["alpha"])), ("generated", esc(r["generated_at"])),
    ]
    out = ('<table id="meta"><tbody>' + "".join(
        f'<tr><th class="l">{esc(a)}</th><td class="l">{b}</td></tr>' for a, b in rows)
        + "</tbody></table>")
    if r["warnings"]:
        out += ('<div class="warn" id="warnings"><b>Warnings</b><ul>'
                + "".join(f"<li>{esc(w)}</li>" for w in r["warnings"]) + "</ul></div>")
    return out


def _variants(r: Mapping[str, Any]) -> str:
    names = list(r["summary"])
    if not names:
        return '<p class="note">No data yet.</p>'
    rows = [[esc(c)] + [esc(fmt(c, r["summary"][v].get(c))) for v in names] for c in COUNT_ROWS]
    for metric in METRIC_TITLES:
        cells = [esc(METRIC_TITLES[metric])]
        for v in names:
            ci = r.get("intervals", {}).get(v, {}).get(metric) or [None, None]
            bounds = "–" if None in ci else f"{fmt(metric, ci[0])}, {fmt(metric, ci[1])}"
            cells.append(esc(fmt(metric, r["summary"][v].get(metric)))
                         + f' <span class="ci">[{esc(bounds)}]</span>')
        rows.append(cells)
    return (table(["", *(esc(v) for v in names)], rows, id_="variants")
            + '<p class="note">Per-variant estimates with 95% intervals: Student t for per-unit '
            "means, the delta method for CTR and AOV (ratios of per-unit sums).</p>")


def _lift(r: Mapping[str, Any]) -> str:
    if not r["lift"]:
        return '<p class="note">No comparison yet.</p>'
    rows = []
    for row in [*r["lift"], *({**c, "cuped": True} for c in r["cuped"]["rows"])]:
        m = row["metric"]
        name = METRIC_TITLES.get(m, m) + (" <b>CUPED</b>" if row.get("cuped") else "")
        # significance after the Holm adjustment where the row has one (lift rows), else raw
        adjusted = row.get("significant_adjusted")
        sig = ('<span class="ok">yes</span>' if (row["significant"] if adjusted is None
                                                 else adjusted) else
               '<span class="note">no</span>')
        vr = row.get("variance_reduction")
        rows.append([esc(row["variant"]), name, esc(fmt(m, row["control"])),
                     esc(fmt(m, row["treatment"])),
                     esc(_signed(m, row["diff"])) + " " + _interval(row["ci_low"],
                                                                    row["ci_high"], m),
                     esc(_pct(row["rel_lift"])) + " " + _interval(row["rel_ci_low"],
                                                                  row["rel_ci_high"], m, True),
                     esc(_p(row["p_value"])),
                     "–" if row.get("p_adjusted") is None else esc(_p(row["p_adjusted"])),
                     sig, esc(row["method"]),
                     "–" if vr is None else esc(f"{vr:.1%}")])
    cuped = r["cuped"]
    note = (f' CUPED adjusts revenue per unit with each unit\'s pre-period revenue '
            f'({cuped.get("units_with_pre_revenue", 0):,} units had some); the last column is '
            "the variance of the difference it removed." if cuped["applied"]
            else f' {esc(cuped.get("note", "CUPED not applied."))}')
    return (table(["variant", "metric", "control", "treatment", "difference [95% CI]",
                   "relative lift [95% CI]", "p-value", "p (Holm)", "significant", "test",
                   "variance cut"], rows, id_="lift", left=2)
            + '<p class="note">Fixed-horizon tests read once at the end: Welch t for per-unit '
            "metrics, delta-method z for ratios; units, not impressions, are the independent "
            "draws. The readout tests every metric of every treatment, so \"significant\" "
            "uses the Holm-adjusted p-value (family-wise error rate over all the lift rows); "
            f"the raw p-value is beside it.{note}</p>")


def _srm(r: Mapping[str, Any]) -> str:
    srm = r.get("srm")
    if srm is None:
        return '<p class="note">No units yet.</p>'
    total = sum(srm["observed"].values()) or 1
    rows = [[esc(v), esc(f"{srm['observed'][v]:,}"), esc(f"{srm['expected'][v]:,.1f}"),
             esc(f"{srm['observed'][v] / total:.2%}")] for v in srm["observed"]]
    verdict = ('<p class="bad" id="srm-status">Sample ratio mismatch' if srm["mismatch"] else
               '<p class="ok" id="srm-status">No sample ratio mismatch')
    return (table(["variant", "units", "expected", "share"], rows, id_="srm")
            + f'{verdict}: chi2 = {srm["chi2"]:.2f}, p = {_p(srm["p_value"])} (alarm below '
            f'{srm["threshold"]}).</p>')


def _sequential(r: Mapping[str, Any]) -> str:
    if not r["sequential"]:
        return '<p class="note">No daily looks yet.</p>'
    out = [f'<p class="note">mSPRT (normal mixture): the always-valid p-value may be read after '
           f'every day and stopping at the first p &lt; {esc(r["alpha"])} keeps the error rate; '
           f'the confidence sequence (band) only narrows. A look is read once each arm has '
           f'{esc(r["min_units_per_look"])} units with data. The dashed fixed-horizon interval is '
           "valid only at the one planned look: peeking at it daily inflates false positives."
           "</p>"]
    for i, s in enumerate(r["sequential"]):
        m = s["metric"]
        out.append(f'<h3>{esc(METRIC_TITLES.get(m, m))}: {esc(s["variant"])} vs '
                   f'{esc(r["control"])}</h3>')
        if not s["looks"]:
            out.append(f'<p class="note">{esc(s.get("note", ""))}</p>')
            continue
        first = s.get("first_reject_day")
        out.append(f'<p>Always-valid p = {esc(_p(s["p_value"]))}, confidence sequence '
                   f'{_interval(s["cs_low"], s["cs_high"], m)}; '
                   + (f'significant since {esc(str(first)[:10])}' if first else
                      "not significant so far")
                   + f' <span class="note">(tau² = {s["tau2"]:.3g}, {esc(s["tau2_source"])})'
                   "</span></p>")
        out.append(lift_chart(s["looks"], metric=m, ident=f"chart-{i}"))
        rows = [[esc(str(lk["day"])[:10]), esc(f'{lk["units_control"]:,}'),
                 esc(f'{lk["units_treatment"]:,}'), esc(_signed(m, lk["diff"])),
                 esc(_pct(lk.get("rel_lift"))), esc(_p(lk["p_value"])),
                 _interval(lk["cs_low"], lk["cs_high"], m), esc(_p(lk.get("fixed_p_value"))),
                 "yes" if lk["reject"] else ("" if lk["ready"] else "not ready")]
                for lk in s["looks"]]
        out.append(table(["day", "units control", "units treatment", "difference",
                          "relative", "always-valid p", "confidence sequence", "fixed p",
                          "reject"], rows))
    return "".join(out)


def _guardrails(r: Mapping[str, Any]) -> str:
    g = r["guardrails"]
    rows = [[esc(c["variant"]), esc(c["metric"]),
             "–" if c["value"] is None else esc(f'{c["value"]:.4g}'),
             "–" if c["threshold"] is None else esc(f'{c["threshold"]:g}'), esc(c["status"])]
            for c in g["checks"]]
    note = f'<p class="note">{esc(g["note"])}</p>' if g.get("note") else ""
    return table(["variant", "guardrail", "value", "upper limit", "status"], rows,
                 id_="guardrails", left=2) + note


SECTIONS: tuple[tuple[str, str], ...] = (
    ("variants", "Variants"), ("lift", "Lift against control"), ("srm", "Sample ratio"),
    ("sequential", "Daily looks (always valid)"), ("guardrails", "Guardrails"),
)


def render(readout: Mapping[str, Any]) -> str:
    """The whole page as a string (UTF-8, no external references, no script)."""
    body = {"variants": _variants(readout), "lift": _lift(readout), "srm": _srm(readout),
            "sequential": _sequential(readout), "guardrails": _guardrails(readout)}
    nav = " · ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in SECTIONS)
    sections = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{body[sid]}</section>'
                       for sid, title in SECTIONS)
    title = f'Experiment readout: {readout["experiment"]}'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{_header(readout)}<nav>{nav}</nav>{sections}"
            "</body></html>\n")


def write_report(readout: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``report.html`` (self-contained, no script) and ``readout.json`` into ``out_dir``;
    returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "readout.json").write_text(json.dumps(readout, indent=2, allow_nan=False) + "\n")
    path = out / "report.html"
    path.write_text(render(readout), encoding="utf-8")
    return path


def summary_lines(readout: Mapping[str, Any]) -> list[str]:
    """A few lines for a terminal: units, the headline lifts, SRM and warnings."""
    lines = [f"experiment {readout['experiment']} (control: {readout['control']}), "
             f"{readout['period']['days']} day(s)"]
    for v, s in readout["summary"].items():
        lines.append(f"  {v}: {s['units']:,} units, ctr {_fmt(s.get('ctr'))}, conversion "
                     f"{_fmt(s.get('conversion_rate'))}, revenue/unit "
                     f"{_fmt(s.get('revenue_per_unit'), 2)}")
    for row in readout["lift"]:
        rel = "n/a" if row["rel_lift"] is None else f"{row['rel_lift']:+.1%}"
        lines.append(f"  {row['variant']} vs {readout['control']} {row['metric']}: {rel} "
                     f"(p = {_fmt(row['p_value'], 3, 'g')}, Holm-adjusted "
                     f"{_fmt(row.get('p_adjusted'), 3, 'g')}"
                     f"{', significant' if row.get('significant_adjusted') else ''})")
    for row in readout["cuped"]["rows"]:
        lines.append(f"  {row['variant']} revenue_per_unit with CUPED: p = "
                     f"{_fmt(row['p_value'], 3, 'g')}, variance -"
                     f"{_fmt(row['variance_reduction'], 1, '%')}")
    srm = readout["srm"]
    if srm is not None:
        lines.append(f"  SRM: p = {srm['p_value']:.3g} "
                     f"({'MISMATCH' if srm['mismatch'] else 'ok'})")
    lines.append(f"  guardrails: {readout['guardrails']['status']}")
    lines += [f"  warning: {w}" for w in readout["warnings"]]
    return lines


def _fmt(value: float | None, digits: int = 4, kind: str = "f") -> str:
    if value is None:
        return "n/a"
    return "< 1e-300" if value == 0 and kind == "g" else f"{value:.{digits}{kind}}"
