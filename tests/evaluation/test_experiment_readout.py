"""The experiment readout from a real SQLite event store: attribution rules on a hand-made store
(known answer), the readout against the statistics on an independently built unit table, SRM on
a 52/48 split of 20k units, guardrails, and the HTML report in headless Chromium."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evaluation.experiment_html import render
from evaluation.experiment_readout import (
    ExperimentFrame,
    build_readout,
    empty_readout,
    experiment_frame,
    experiment_results,
    load_events,
    load_exposures,
    summary_lines,
    write_report,
)
from evaluation.experiment_stats import (
    GuardrailThresholds,
    SampleRatioMismatchWarning,
    compare_variants,
)
from recsys.errors import DataError
from serving.event_store import SQLiteEventStore
from serving.exposures import Exposure, write_exposures

CHROMIUM = Path("/usr/bin/chromium")
EXP = {"name": "exp", "variants": [{"name": "control", "weight": 0.5},
                                   {"name": "treatment", "weight": 0.5}]}
START = datetime(2026, 3, 1, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat()


def ev(event_id: str, user: str | None, item: str, kind: str, t: datetime, **extra: Any
       ) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "item_id": item, "event_type": kind,
            "timestamp": iso(t), **extra}


def exposure(rid: str, variant: str, unit: str, t: datetime, experiment: str = "exp"
             ) -> Exposure:
    return Exposure(rid, experiment, variant, unit, ("i1", "i2"), "v1", t)


# ---------------------------------------------------------------------- attribution
def test_attribution_and_pre_period_known_answer(tmp_path: Path) -> None:
    h = timedelta(hours=1)
    day2 = START + timedelta(days=1)
    with SQLiteEventStore(tmp_path / "e.db") as store:
        write_exposures(store, [
            exposure("r1", "control", "u1", START + 10 * h),
            # server clock far ahead of the client's: the first linked event sets the time
            exposure("r2", "treatment", "u2", START + timedelta(days=300)),
            exposure("r3", "treatment", "s3", START + 11 * h),          # anonymous: a session
            exposure("r9", "control", "u7", START + 10 * h, experiment="other"),
        ])
        store.add_events([
            ev("pre1", "u1", "i9", "purchase", START - 48 * h, price=7.0),   # pre-period
            ev("a1", "u1", "i1", "impression", START + 10 * h, request_id="r1", position=0),
            ev("a2", "u1", "i1", "click", START + 10 * h, request_id="r1", position=0),
            # one checkout, two lines: one order
            ev("a3", "u1", "i1", "purchase", START + 11 * h, request_id="r1", price=10.0,
               quantity=2, session_id="S1"),
            ev("a4", "u1", "i2", "purchase", START + 11 * h, request_id="r1", price=1.0,
               session_id="S1"),
            ev("a5", "u1", "i3", "purchase", day2, price=5.0),              # no request id
            # its exposure was lost (queue full): the unit's identity still attributes it
            ev("a6", "u1", "i4", "click", day2, request_id="r-lost"),
            ev("a7", "u7", "i4", "click", day2, request_id="r9"),           # other experiment
            ev("b1", "u2", "i1", "impression", START + 12 * h, request_id="r2", position=0),
            ev("b2", "u2", "i2", "impression", START + 12 * h, request_id="r2", position=1),
            {"event_id": "c1", "session_id": "s3", "item_id": "i1", "event_type": "click",
             "timestamp": iso(START + 12 * h)},
            ev("d1", "u4", "i1", "click", START + 12 * h),                   # not in it
            ev("v1", "u1", "i1", "view", START + 12 * h),                    # views not read
        ])
        exposures = load_exposures(store, "exp")
        events = load_events(store)
    outside = pd.DataFrame({"user_id": ["u2", "u1"], "item_id": ["i5", "i9"],
                            "event_type": ["purchase", "purchase"],
                            "timestamp": pd.to_datetime([START - 72 * h, START - 48 * h]),
                            "price": [3.0, 7.0], "quantity": [1, 1]})   # u1's is in the store
    data = experiment_frame(exposures, events, pre_events=outside)
    assert data.start == pd.Timestamp(START + 10 * h)
    f = data.frame.set_index(["unit", "day"])
    d1, d2 = pd.Timestamp(START), pd.Timestamp(START + timedelta(days=1))
    u1 = f.loc[("u1", d1)]
    assert (u1.exposures, u1.impressions, u1.clicks, u1.purchases, u1.revenue, u1.orders) == (
        1, 1, 1, 2, 21.0, 1)
    u1b = f.loc[("u1", d2)]
    assert (u1b.exposures, u1b.clicks, u1b.purchases, u1b.revenue) == (0, 1, 1, 5.0)
    u2 = f.loc[("u2", d1)]   # exposure dated by its events, not the server's future clock
    assert (u2.variant, u2.exposures, u2.impressions) == ("treatment", 1, 2)
    assert f.loc[("s3", d1)].clicks == 1
    assert set(data.frame["unit"]) == {"u1", "u2", "s3"}
    pre = data.frame.groupby("unit")[["pre_revenue", "pre_purchases"]].first()
    assert pre.loc["u1"].tolist() == [7.0, 1.0]       # not double counted
    assert pre.loc["u2"].tolist() == [3.0, 1.0] and pre.loc["s3"].tolist() == [0.0, 0.0]
    override = experiment_frame(exposures, events, pre_period={"u1": 1.5})
    assert override.frame.groupby("unit")["pre_revenue"].first().to_dict() == {
        "s3": 0.0, "u1": 1.5, "u2": 0.0}
    assert any("pre_period" in n for n in override.notes)


def test_a_unit_in_two_variants_is_an_error(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        write_exposures(store, [exposure("r1", "control", "u1", START),
                                exposure("r2", "treatment", "u1", START)])
        with pytest.raises(DataError, match="more than one variant"):
            experiment_results(store, EXP)


# ---------------------------------------------------------------------- a known experiment
def populate(store: SQLiteEventStore, *, units: int = 600, days: int = 5, seed: int = 0,
             ctr: tuple[float, float] = (0.05, 0.08), share: float = 0.5) -> pd.DataFrame:
    """Store a simulated experiment; return the unit-day table built directly from the draws,
    independently of the readout's attribution code."""
    rng = np.random.default_rng(seed)
    level = rng.lognormal(0.0, 1.0, units)
    exposures, events, rows = [], [], []
    for u in range(units):
        uid = f"u{u}"
        treated = rng.random() < share
        variant = "treatment" if treated else "control"
        for j in range(rng.poisson(2 * level[u])):     # pre-period purchases, same spend level
            events.append(ev(f"p{u}-{j}", uid, "i0", "purchase", START - timedelta(days=3 + j),
                             price=round(20 * level[u], 2)))
        for d in range(days):
            if rng.random() < 0.3:
                continue
            t = START + timedelta(days=d, hours=int(rng.integers(0, 23)))
            rid = f"r{u}-{d}"
            exposures.append(exposure(rid, variant, uid, t))
            clicks = rng.random(5) < ctr[treated]
            bought = clicks & (rng.random(5) < 0.4)
            price = round(20 * level[u] * rng.lognormal(0.0, 0.3), 2)
            for pos in range(5):
                events.append(ev(f"i{rid}-{pos}", uid, f"i{pos}", "impression", t,
                                 request_id=rid, position=pos))
                if clicks[pos]:
                    events.append(ev(f"c{rid}-{pos}", uid, f"i{pos}", "click", t,
                                     request_id=rid, position=pos))
                if bought[pos]:
                    events.append(ev(f"b{rid}-{pos}", uid, f"i{pos}", "purchase",
                                     t + timedelta(minutes=5), request_id=rid, price=price))
            rows.append({"variant": variant, "unit": uid, "day": pd.Timestamp(START) + pd.Timedelta(
                days=d), "exposures": 1, "impressions": 5, "clicks": int(clicks.sum()),
                "carts": 0, "purchases": int(bought.sum()), "revenue": price * bought.sum(),
                "orders": int(bought.any())})
    write_exposures(store, exposures)
    for lo in range(0, len(events), 5000):
        store.add_events(events[lo: lo + 5000])
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    path = tmp_path_factory.mktemp("known") / "e.db"
    with SQLiteEventStore(path) as store:
        expected = populate(store)
    return path, expected


@pytest.fixture(scope="module")
def readout(known: tuple[Path, pd.DataFrame]) -> dict[str, Any]:
    with SQLiteEventStore(known[0]) as store:
        return experiment_results(store, EXP)


def test_readout_matches_the_statistics_on_the_true_unit_table(
        known: tuple[Path, pd.DataFrame], readout: dict[str, Any]) -> None:
    expected = compare_variants(known[1]).set_index("metric")
    got = {row["metric"]: row for row in readout["lift"]}
    for metric in ("ctr", "conversion_rate", "revenue_per_unit", "aov"):
        for col in ("control", "treatment", "diff", "ci_low", "ci_high", "p_value"):
            assert got[metric][col] == pytest.approx(expected.loc[metric, col], rel=1e-9)
    assert got["ctr"]["significant"] and got["ctr"]["rel_lift"] > 0.3
    units = known[1].groupby("variant")["unit"].nunique().to_dict()
    assert {v: s["units"] for v, s in readout["summary"].items()} == units
    assert not readout["srm"]["mismatch"]
    # CUPED with the pre-period revenue (same spend level) cuts the variance
    cuped = readout["cuped"]["rows"][0]
    assert readout["cuped"]["applied"] and cuped["variance_reduction"] > 0.1
    # daily always-valid looks: one per day, p non-increasing, CTR detected by the end
    seq = {s["metric"]: s for s in readout["sequential"]}
    looks = seq["ctr"]["looks"]
    assert len(looks) == 5 and readout["period"]["days"] == 5
    p = [lk["p_value"] for lk in looks]
    assert p == sorted(p, reverse=True) and seq["ctr"]["reject"]
    assert seq["ctr"]["tau2_source"] == "last look"
    json.dumps(readout, allow_nan=False)   # JSON-ready: no NaN, no numpy, no timestamps
    lines = summary_lines(readout)
    assert any("ctr" in line and "significant" in line for line in lines)


def test_srm_flags_a_52_48_split_of_20k_units(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for share, flagged in ((0.52, True), (0.50, False)):
        treated = rng.random(20_000) < share
        with SQLiteEventStore(tmp_path / f"srm{share}.db") as store:
            write_exposures(store, [exposure(f"r{i}", "treatment" if t else "control", f"u{i}",
                                             START) for i, t in enumerate(treated)])
            if flagged:
                with pytest.warns(SampleRatioMismatchWarning):
                    r = experiment_results(store, EXP)
            else:
                r = experiment_results(store, EXP)
        assert r["srm"]["mismatch"] is flagged
        assert sum(r["srm"]["observed"].values()) == 20_000
        assert any("sample ratio mismatch" in w for w in r["warnings"]) is flagged
        if flagged:
            assert r["srm"]["p_value"] < 1e-4


def test_guardrails_measured_partly_and_not(known: tuple[Path, pd.DataFrame],
                                            readout: dict[str, Any]) -> None:
    assert readout["guardrails"]["status"] == "not measured"
    assert "neither latency nor fallbacks" in readout["guardrails"]["note"]
    limits = GuardrailThresholds(latency_p99_ms=40.0, fallback_rate=0.5)
    with SQLiteEventStore(known[0]) as store:
        full = experiment_results(store, EXP, thresholds=limits, guardrails={
            "control": {"latency_p99_ms": 12.0, "fallback_rate": 0.1},
            "treatment": {"latency_p99_ms": 55.0, "fallback_rate": 0.1}})
        part = experiment_results(store, EXP, thresholds=limits, guardrails={
            "control": {"latency_p99_ms": 12.0, "fallback_rate": 0.1}})
    status = {(c["variant"], c["metric"]): c["status"] for c in full["guardrails"]["checks"]}
    assert status[("treatment", "latency_p99_ms")] == "failed"
    assert status[("control", "latency_p99_ms")] == "passed"
    assert full["guardrails"]["status"] == "failed"
    assert part["guardrails"]["status"] == "partly measured"


def test_a_drifting_effect_empties_the_confidence_sequence_and_the_readout_says_so() -> None:
    """Conversion is cumulative per unit: a treatment whose units keep converting day after day
    has a growing difference, which no single constant effect fits."""
    rows = []
    for u in range(400):
        treated = u % 2 == 1
        for d in range(10):
            # treated units convert on a day spread over 20 days, control units once at the start
            bought = int(d == (u // 2) % 20 if treated else d == 0 and u % 8 == 0)
            rows.append({"variant": "treatment" if treated else "control", "unit": f"u{u}",
                         "day": pd.Timestamp(START) + pd.Timedelta(days=d), "exposures": 1,
                         "impressions": 5, "clicks": int((u + d) % 3 == 0), "carts": bought,
                         "purchases": bought,
                         "revenue": 10.0 * bought, "orders": bought, "pre_revenue": 0.0,
                         "pre_purchases": 0.0, "pre_events": 0.0})
    frame = pd.DataFrame(rows)
    data = ExperimentFrame(frame, pd.Timestamp(START), pd.Timestamp(START), ())
    r = build_readout(data, {"control": 0.5, "treatment": 0.5}, name="drift")
    seq = {s["metric"]: s for s in r["sequential"]}
    assert seq["conversion_rate"]["empty_sequence_since"] is not None
    assert seq["conversion_rate"]["reject"]          # the p-value is still read
    assert seq["ctr"]["empty_sequence_since"] is None
    assert any("conversion_rate" in w and "empty" in w for w in r["warnings"])
    assert not r["cuped"]["applied"] and "pre-period" in r["cuped"]["note"]
    assert '<span class="ci">empty</span>' in render(r)


def test_empty_experiment(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        r = experiment_results(store, EXP)
    assert r == {**empty_readout("exp", {"control": 0.5, "treatment": 0.5}, r["warnings"][0]),
                 "generated_at": r["generated_at"]}
    assert "no exposures" in r["warnings"][0]
    html = write_report(r, tmp_path / "report").read_text()
    assert "No data yet" in html


# ---------------------------------------------------------------------- the HTML report
def chromium_dump(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM Chromium renders and the console messages it logged."""
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr",
         "--v=0", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_report_is_self_contained_html(readout: dict[str, Any], tmp_path: Path) -> None:
    page = write_report(readout, tmp_path / "report")
    html = page.read_text()
    assert json.loads((tmp_path / "report" / "readout.json").read_text()) == readout
    for ident in ('id="variants"', 'id="lift"', 'id="srm"', 'id="srm-status"',
                  'id="guardrails"', 'id="chart-0"', "<svg", "<polygon", "not measured"):
        assert ident in html, ident
    assert "<script" not in html and "src=" not in html and "<link" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_report_renders_in_headless_chromium(readout: dict[str, Any], tmp_path: Path) -> None:
    page = write_report(readout, tmp_path / "report")
    dom, console = chromium_dump(page, tmp_path)
    assert console == []
    assert "Experiment readout: exp" in dom and "<svg" in dom and 'id="srm-status"' in dom


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_chromium_sees_console_errors(tmp_path: Path) -> None:
    """The check above can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>nope();</script></body></html>")
    _, console = chromium_dump(bad, tmp_path)
    assert any("nope" in line for line in console)
