"""Building blocks of the report pages: escaping, number formats, tables and the stylesheet."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

MONEY = ("revenue_per_rec", "revenue_per_user", "aov")
BITS = ("novelty",)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1180px;padding:1.2em 2em 4em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:2px solid #ddd;
padding-bottom:.2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em}
th,td{border:1px solid #d6d6d6;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f3f4f6}td.l,th.l{text-align:left}
.ci{color:#555;font-size:.9em;white-space:nowrap}.cmp{display:block;font-size:.85em;color:#166534}
.cmp.neg{color:#991b1b}.ns,.cmp.ns{color:#888}.tag{font-weight:600}
.warn{background:#fff7e6;border:1px solid #f0c36d;padding:.5em 1em;border-radius:4px}
.note{color:#555;font-size:.9em}pre{background:#f6f8fa;padding:1em;overflow:auto;
font-size:.8em;max-height:40em}svg{max-width:100%;height:auto}
nav a{margin-right:1em}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt_value(metric: str, value: float | int | None) -> str:
    """A metric value for display: money with 2 decimals, bits with 2, rates with 4."""
    if value is None:
        return "–"
    base = metric.split("@")[0].removeprefix("new_")
    if base in MONEY or base in BITS:
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def signed(metric: str, value: float) -> str:
    return ("+" if value >= 0 else "") + fmt_value(metric, value)


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, id_: str | None = None,
          left: int = 1) -> str:
    """An HTML table of pre-escaped HTML cells; the first ``left`` columns are left-aligned."""
    ident = f' id="{esc(id_)}"' if id_ else ""
    head = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
