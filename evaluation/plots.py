"""Report figures as inline SVG strings, drawn from the report dict with matplotlib.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global backend
switch, nothing shown on screen) and saved as SVG with text kept as text, no date and a fixed id
salt, so the same report gives byte-identical SVG. Each function returns ``None`` when matplotlib
is not installed; the HTML then says the figure is unavailable.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_METRICS: tuple[str, ...] = ("ndcg", "recall", "hit_rate", "precision", "revenue_per_rec",
                                  "coverage")


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, name: str) -> str:
    """SVG text of ``fig`` for inlining; ``name`` prefixes its element ids so the figures of one
    page never share an id."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"recsys-{name}",
                                "font.size": 9}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]   # drop the XML prolog and DOCTYPE for inline use
    # matplotlib numbers its groups per figure (figure_1, axes_1...): prefix every id and every
    # reference to one, so several inline figures make one valid page
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', text)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)


def metric_curves(metrics: Mapping[str, Mapping[str, float | None]], ks: Sequence[int]
                  ) -> str | None:
    """One panel per metric: its mean at each k, one line per model."""
    if not available() or not metrics:
        return None
    fig = _figure(9.0, 4.8)
    axes = fig.subplots(2, 3)
    for ax, metric in zip(axes.ravel(), CURVE_METRICS, strict=True):
        for name, values in metrics.items():
            ys = [values.get(f"{metric}@{k}") for k in ks]
            ax.plot(list(ks), [float("nan") if y is None else y for y in ys], marker="o",
                    label=name)
        measured = any(f"{metric}@{k}" in values for values in metrics.values() for k in ks)
        ax.set_title(f"{metric}@k" if measured else f"{metric}@k: not measured")
        ax.set_xticks(list(ks))
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return _svg(fig, "curves")


def interval_plot(headline: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str]
                  ) -> str | None:
    """Point estimates with their confidence intervals, one panel per metric."""
    if not available() or not headline:
        return None
    fig = _figure(9.0, 0.5 + 0.35 * len(headline) + 1.0)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    names = list(headline)
    for ax, metric in zip(axes, metrics, strict=True):
        for y, name in enumerate(names):
            v = headline[name].get(metric, {})
            est, low, high = v.get("estimate"), v.get("low"), v.get("high")
            if est is None:
                continue
            if low is not None and high is not None:
                ax.errorbar([est], [y], xerr=[[est - low], [high - est]], fmt="o", capsize=3)
            else:
                ax.plot([est], [y], "o")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if ax is axes[0] else [""] * len(names))
        ax.set_ylim(-0.5, len(names) - 0.5)
        ax.invert_yaxis()
        ax.set_title(metric)
        ax.grid(alpha=0.3, axis="x")
    return _svg(fig, "intervals")


def popularity_bias(bias: Mapping[str, Any]) -> str | None:
    """Share of recommendation slots per item-popularity bin, each model against the catalogue's
    share of past interactions (bin 1 = the most popular 10% of items)."""
    if not available() or not bias:
        return None
    fig = _figure(8.0, 3.6)
    ax = fig.subplots()
    x = list(range(1, len(bias["bins"]) + 1))
    ax.plot(x, bias["catalog"], color="black", linestyle="--", marker="s",
            label="catalogue (past interactions)")
    for name, shares in bias["models"].items():
        ax.plot(x, shares, marker="o", label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(bias["bins"], rotation=30)
    ax.set_xlabel("item popularity bin (most popular first)")
    ax.set_ylabel(f"share of slots @{bias['k']}")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig, "bias")


def learning_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]],
                    best: Mapping[str, Any] | None = None) -> str | None:
    """One panel per model: its validation metrics per iteration/epoch (train loss dashed, on
    its own axis); a dotted vertical line at ``best[model]``, the iteration kept."""
    curves = {n: c for n, c in curves.items() if c}
    if not available() or not curves:
        return None
    fig = _figure(9.0, 3.2)
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (name, curve) in zip(axes, curves.items(), strict=True):
        xkey = next((k for k in ("iteration", "epoch", "round") if k in curve[0]), None)
        xs = [row.get(xkey, i + 1) if xkey else i + 1 for i, row in enumerate(curve)]
        keys = [k for k in curve[0] if k not in (xkey, "seconds") and k != "train_loss"
                and isinstance(curve[0][k], int | float)]
        for key in keys:
            ax.plot(xs, [row.get(key) for row in curve], marker=".", label=key)
        if "train_loss" in curve[0]:
            twin = ax.twinx()
            twin.plot(xs, [row.get("train_loss") for row in curve], color="grey",
                      linestyle="--", label="train_loss")
            twin.set_ylabel("train loss", color="grey")
        if best and best.get(name):
            ax.axvline(float(best[name]), color="black", linestyle=":", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel(xkey or "step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _svg(fig, "learning")
