"""The drift and health monitoring report as one HTML page, from the JSON that
``GET /v1/monitoring`` answers (``serving.monitoring.MonitorReport.to_json``): the checks
against their thresholds, PSI per feature, and the training vs live histograms of the score
and of the most drifted features. Figures are inline SVG (:mod:`evaluation.plots`).

>>> # Path("monitor.html").write_text(render_monitor(body))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluation.plots import _figure, _svg, available
from evaluation.report_html_base import CSS, esc, table

SCORE = "score"
SHOWN_FEATURES = 6       # histograms drawn: the score and the most drifted features


def _num(value: float | int | None, digits: int = 4) -> str:
    return "-" if value is None else (f"{value:,}" if isinstance(value, int)
                                      else f"{value:.{digits}g}")


def psi_plot(psi: Mapping[str, float], threshold: float | None,
             ignored: Sequence[str] = ()) -> str | None:
    """Horizontal bars: PSI per feature (largest first), the threshold as a line; red over
    it, grey for the features that never alert."""
    if not available() or not psi:
        return None
    items = sorted(psi.items(), key=lambda kv: -kv[1])[:30]
    fig = _figure(8.0, 0.8 + 0.22 * len(items))
    ax = fig.subplots()
    names = [f"{k} (no alert)" if k in ignored else k for k, _ in items]
    ax.barh(range(len(items)), [v for _, v in items],
            color=["#9ca3af" if k in ignored else
                   "#b91c1c" if threshold is not None and v > threshold else "#2563eb"
                   for k, v in items])
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("PSI (live vs training profile)")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig, "psi")


def histogram_plots(histograms: Mapping[str, Mapping[str, Sequence[float]]],
                    names: Sequence[str]) -> str | None:
    """Training vs live share per bin (the last bin: missing values), one panel per name."""
    names = [n for n in names if n in histograms]
    if not available() or not names:
        return None
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = _figure(9.0, 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        h = histograms[name]
        train, live = list(h["train"]), list(h["live"])
        x = list(range(len(train)))
        ax.bar([i - 0.2 for i in x], train, width=0.4, label="training", color="#9ca3af")
        ax.bar([i + 0.2 for i in x], live, width=0.4, label="live", color="#2563eb")
        edges = list(h["edges"])
        labels = [f"<{edges[0]:.3g}" if edges else "all"]
        labels += [f">={e:.3g}" for e in edges]
        ax.set_xticks(x)
        ax.set_xticklabels([*labels, "missing"][: len(x)], rotation=60, fontsize=6)
        ax.set_title(name, fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    return _svg(fig, "hist")


def render_monitor(body: Mapping[str, Any]) -> str:
    """The page for one report."""
    checks = body.get("checks", [])
    firing = body.get("firing", [])
    psi = dict(body.get("psi", {}))
    feature_psi = {k: v for k, v in psi.items() if k != SCORE}
    threshold = next((c["threshold"] for c in checks if c["name"] == "feature_psi"), None)
    drifted = sorted(feature_psi, key=lambda k: -feature_psi[k])[: SHOWN_FEATURES - 1]
    status = (f'<p class="warn">ALERT: {esc(", ".join(firing))}</p>' if firing
              else "<p>No alert.</p>")
    rows = [[esc(c["name"]), _num(c["value"]),
             "-" if c["threshold"] is None else f'{"&gt;" if c["bound"] == "max" else "&lt;"} '
             f'{_num(c["threshold"])}',
             '<span class="tag">FIRING</span>' if c["firing"] else "ok", esc(c["detail"])]
            for c in checks]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>recsys monitoring</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Drift and health monitoring</h1>",
        f'<p class="note">{esc(body.get("at", ""))}, worker {esc(body.get("worker_pid", ""))}'
        f', bundle {esc(body.get("bundle_version"))}, {_num(body.get("rows"))} served rows '
        "sampled</p>", status,
        "<h2>Checks</h2>",
        table(["check", "value", "alert when", "state", "detail"], rows, id_="checks",
              left=1),
        "<h2>Health</h2>",
        table(["value", ""], [[esc(k), _num(v)] for k, v in body.get("health", {}).items()]),
        "<h2>Events</h2>",
        table(["value", ""], [[esc(k), _num(v)] for k, v in body.get("events", {}).items()]),
        "<h2>Drift: PSI per ranker feature</h2>",
    ]
    if not psi:
        parts.append('<p class="note">Not enough served rows yet for a PSI verdict.</p>')
    else:
        ignored = list(body.get("psi_ignored", []))
        parts.append(psi_plot(feature_psi, threshold, ignored)
                     or "<p>(figure unavailable)</p>")
        if ignored:
            parts.append(f'<p class="note">Shown but never alerting: {esc(", ".join(ignored))}'
                         " (the calendar: a live window covers hours, training weeks).</p>")
        parts.append(f"<p>score PSI: {_num(psi.get(SCORE))}</p>")
        parts.append("<h3>Training vs live: the score and the most drifted features</h3>")
        parts.append(histogram_plots(body.get("histograms", {}), [SCORE, *drifted])
                     or "<p>(figure unavailable)</p>")
        parts.append(table(["feature", "PSI"], [[esc(k), _num(v)] for k, v in
                                               sorted(psi.items(), key=lambda kv: -kv[1])],
                           id_="psi"))
    parts.append("</body></html>")
    return "\n".join(parts)
