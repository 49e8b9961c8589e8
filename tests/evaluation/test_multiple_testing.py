"""Holm-adjusted p-values of the experiment readout against statsmodels' ``multipletests`` on the
same raw p-values, and where they are shown: beside the raw ones in readout.json and in the HTML
lift table, with "significant" read from the adjusted one."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from evaluation.experiment_readout import ExperimentFrame, build_readout, write_report
from evaluation.multiple_testing import HOLM, adjust

START = pd.Timestamp("2026-03-01", tz="UTC")
WEIGHTS = {"control": 1 / 3, "t1": 1 / 3, "t2": 1 / 3}


def three_variant_frame(seed: int = 1, units: int = 900) -> pd.DataFrame:
    """Unit-day rows of a 3-variant test: t1 lifts CTR (and what follows from clicks), t2 does
    nothing. Seed 1 gives a family where Holm keeps one raw-significant row and drops another."""
    rng = np.random.default_rng(seed)
    ctr = {"control": 0.05, "t1": 0.065, "t2": 0.05}
    rows = []
    for u in range(units):
        variant = list(WEIGHTS)[u % 3]
        for d in range(3):
            clicks = rng.binomial(5, ctr[variant])
            carts = rng.binomial(clicks, 0.5)
            buys = rng.binomial(carts, 0.5)
            rows.append({"variant": variant, "unit": f"u{u}", "day": START + pd.Timedelta(days=d),
                         "exposures": 1, "impressions": 5, "clicks": clicks, "carts": carts,
                         "purchases": buys, "revenue": 20 * rng.lognormal(0, 0.5) * buys,
                         "orders": int(buys > 0), "pre_revenue": 0.0, "pre_purchases": 0.0,
                         "pre_events": 0.0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def readout() -> dict[str, Any]:
    data = ExperimentFrame(three_variant_frame(), START, START + pd.Timedelta(days=2), ())
    return build_readout(data, WEIGHTS, name="three-way")


class _Tables(HTMLParser):
    """Cells (as text) of every ``<table id=...>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_adjust_is_statsmodels_holm_and_skips_missing_tests() -> None:
    raw = [0.01, None, 0.04, 0.03, float("nan"), 0.2, 0.0004]
    finite = [p for p in raw if p is not None and np.isfinite(p)]
    expected = iter(multipletests(finite, method="holm")[1])
    got = adjust(raw, HOLM)
    assert [None if p is None else pytest.approx(p, abs=1e-12) for p in got] == [
        None if p is None or not np.isfinite(p) else pytest.approx(next(expected), abs=1e-12)
        for p in raw]


def test_readout_holm_matches_statsmodels(readout: dict[str, Any]) -> None:
    lift = readout["lift"]
    assert len(lift) == 2 * 5          # two treatments x five metrics: one family
    raw = np.array([row["p_value"] for row in lift], dtype=float)
    reject, holm, _, _ = multipletests(raw, alpha=readout["alpha"], method="holm")
    assert [row["p_adjusted"] for row in lift] == pytest.approx(holm.tolist(), rel=1e-12)
    assert [row["significant_adjusted"] for row in lift] == reject.tolist()
    assert readout["multiple_testing"]["method"] == "holm"
    assert readout["multiple_testing"]["tests"] == len(lift)
    # the data tells Holm apart from the neighbouring procedures, so a wrong one would fail here
    for other in ("bonferroni", "fdr_bh"):
        assert not np.allclose(multipletests(raw, method=other)[1], holm)
    # and it matters: one row is significant raw but not after Holm, one stays significant
    alpha = readout["alpha"]
    assert any(row["p_value"] < alpha <= row["p_adjusted"] for row in lift)
    assert any(row["p_adjusted"] < alpha for row in lift)


def test_raw_and_adjusted_sit_side_by_side_in_json_and_html(readout: dict[str, Any],
                                                           tmp_path: Path) -> None:
    page = write_report(readout, tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "readout.json").read_text())
    assert [(r["p_value"], r["p_adjusted"]) for r in saved["lift"]] == [
        (r["p_value"], r["p_adjusted"]) for r in readout["lift"]]   # both in every lift row

    parser = _Tables()
    parser.feed(page.read_text())
    header, *rows = parser.tables["lift"]
    raw_col = header.index("p-value")
    assert header[raw_col + 1] == "p (Holm)"
    sig_col = header.index("significant")
    shown = rows[: len(readout["lift"])]          # the CUPED rows follow the lift rows
    alpha = readout["alpha"]
    for cells, row in zip(shown, readout["lift"], strict=True):
        assert (cells[0], cells[raw_col], cells[raw_col + 1]) == (
            row["variant"], f"{row['p_value']:.3g}", f"{row['p_adjusted']:.3g}")
        assert cells[sig_col] == ("yes" if row["p_adjusted"] < alpha else "no")
