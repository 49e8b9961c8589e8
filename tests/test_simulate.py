"""The closed-loop simulator: shoppers from the synthetic shop's truth against the API.

* in-process, through FastAPI's TestClient: popularity (control) vs hybrid (treatment) on the
  tiny shop; the readout detects the hybrid's CTR lift, and every lift's sign agrees with the
  offline evaluation of the same bundle;
* against a fake ``post`` backed by the real HybridRecommender and a real SQLiteEventStore:
  determinism, well-formed events, error accounting;
* over real HTTP against a uvicorn process: ``simulate_command`` end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from evaluation.backtest import Fold
from evaluation.experiment_readout import experiment_results
from evaluation.offline import score_lists
from pipelines import experiment as experiment_cli
from pipelines import simulate as sim
from recsys.data.synthetic_truth import ShopTruth
from recsys.data.validate import load_dataset
from recsys.errors import ConfigError
from recsys.recommender import HybridRecommender, Request
from serving.app import create_app
from serving.event_store import SQLiteEventStore
from serving.experiments import Experiment, assign
from serving.exposures import Exposure, write_exposures
from serving.settings import ServingSettings

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = {
    "name": "pop-vs-hybrid", "salt": "sim-1",
    "variants": [{"name": "control", "weight": 0.5, "pipeline": "popularity"},
                 {"name": "treatment", "weight": 0.5, "pipeline": "hybrid"}],
}
SERVING_TOML = """
event_store = "{db}"
warmup_requests = 1
erasure_poll_s = 0
[bundles]
default = "{bundle}"
[[experiments]]
name = "pop-vs-hybrid"
salt = "sim-1"
[[experiments.variants]]
name = "control"
weight = 0.5
pipeline = "popularity"
[[experiments.variants]]
name = "treatment"
weight = 0.5
pipeline = "hybrid"
"""


@dataclass
class AbRun:
    summary: sim.SimSummary
    readout: dict[str, Any]
    live: dict[str, Any]
    config: Path


@pytest.fixture(scope="module")
def ab_run(tiny_shop: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> AbRun:
    """400 shoppers of the tiny shop for 5 days through the API (TestClient), then the readout
    from the store it wrote, with the shop's own events as the CUPED pre-period."""
    work = tmp_path_factory.mktemp("ab")
    config = work / "serving.toml"
    config.write_text(SERVING_TOML.format(db=work / "events.db", bundle=tiny_bundle))
    settings = ServingSettings.model_validate({
        "bundles": {"default": str(tiny_bundle)}, "event_store": str(work / "events.db"),
        "experiments": [EXPERIMENT], "warmup_requests": 1, "erasure_poll_s": 0,
        "keys": {"admin": "sim-admin"}})
    truth = ShopTruth.load(tiny_shop)
    with TestClient(create_app(settings), headers={"X-API-Key": "sim-admin"}) as client:
        summary = sim.simulate(lambda path, body: client.post(path, json=body), truth,
                               sim.SimConfig(users=min(400, len(truth.user_ids)), days=5,
                                             seed=1, visits_per_day=1.0))
        live = client.get(f"/v1/experiments/{EXPERIMENT['name']}").json()
    with SQLiteEventStore(work / "events.db") as store:
        readout = experiment_results(store, EXPERIMENT, pre_events=load_dataset(tiny_shop).events)
    return AbRun(summary, readout, live, config)


def offline_scores(fold: Fold) -> dict[str, dict[str, float]]:
    """The backtest of both pipelines (fitted before the cutoff, scored after it)."""
    return {p: score_lists(fold.results["for_you"][p].lists[10], fold.window, (10,))
            for p in ("popularity", "hybrid")}


def test_hybrid_beats_popularity_online_as_offline(ab_run: AbRun, tiny_folds: list) -> None:
    s, r = ab_run.summary, ab_run.readout
    assert s.requests > 1000 and s.error_count == 0
    assert s.events_inserted == s.events_sent and s.impressions == 10 * s.requests
    assert not r["srm"]["mismatch"]
    lift = {row["metric"]: row for row in r["lift"]}
    # the readout detects the CTR lift, fixed-horizon and always-valid alike
    assert lift["ctr"]["significant"] and lift["ctr"]["rel_lift"] > 0.2
    seq = {x["metric"]: x for x in r["sequential"]}
    assert seq["ctr"]["reject"]
    # the funnel follows; revenue per user is positive, significant only at benchmark scale
    assert lift["conversion_rate"]["diff"] > 0 and lift["revenue_per_unit"]["diff"] > 0
    offline = offline_scores(tiny_folds[0])
    for online, metric in (("ctr", "ctr@10"), ("conversion_rate", "conversion@10"),
                           ("revenue_per_unit", "revenue_per_user@10")):
        assert np.sign(lift[online]["diff"]) == np.sign(
            offline["hybrid"][metric] - offline["popularity"][metric]), metric
    # the API's live counts and the readout read the same exposures
    for variant, counts in ab_run.live["counts"].items():
        assert counts["units"] == r["summary"][variant]["units"]
        assert counts["exposures"] == r["summary"][variant]["exposures"]
    # CUPED reads the shop's own history of these users
    assert r["cuped"]["applied"] and r["cuped"]["rows"][0]["variance_reduction"] > 0


def test_report_and_plan_commands(ab_run: AbRun, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    experiment_cli.add_report_arguments(parser)
    out = tmp_path / "report"
    experiment_cli.experiment_report_command(parser.parse_args(
        ["pop-vs-hybrid", "--config", str(ab_run.config), "--out", str(out),
         "--tau2", "ctr=0.0005"]))
    text = capsys.readouterr().out
    assert "treatment vs control ctr" in text and "SRM" in text
    readout = json.loads((out / "readout.json").read_text())
    ctr = next(s for s in readout["sequential"] if s["metric"] == "ctr")
    assert ctr["tau2"] == 0.0005 and ctr["tau2_source"] == "given"
    assert (out / "report.html").stat().st_size > 10_000
    with pytest.raises(ConfigError, match="no experiment 'nope'"):
        experiment_cli.experiment_report_command(parser.parse_args(
            ["nope", "--config", str(ab_run.config), "--out", str(out)]))

    plan = argparse.ArgumentParser()
    experiment_cli.add_plan_arguments(plan)
    experiment_cli.experiment_plan_command(plan.parse_args(
        ["--baseline-rate", "0.05", "--mde", "0.10", "--daily-units", "2000"]))
    experiment_cli.experiment_plan_command(plan.parse_args(
        ["--baseline-rate", "0.05", "--mde", "0.005", "--absolute"]))
    text = capsys.readouterr().out
    assert text.count("units per variant: 31,218 (62,436") == 2 and "days at 2,000" in text
    with pytest.raises(ConfigError, match="outside"):
        experiment_cli.experiment_plan_command(plan.parse_args(
            ["--baseline-rate", "0.05", "--mde", "1.0", "--absolute"]))


# ---------------------------------------------------------------------- a fake post
@dataclass
class FakeResponse:
    status_code: int
    body: Any

    @property
    def text(self) -> str:
        return json.dumps(self.body)

    def json(self) -> Any:
        return self.body


class InProcessAPI:
    """The two endpoints without HTTP: bucketing, the real HybridRecommender, a real event store."""

    def __init__(self, rec: HybridRecommender, store: SQLiteEventStore) -> None:
        self.rec, self.store = rec, store
        self.experiment = Experiment.model_validate(EXPERIMENT)
        self.posted: list[dict[str, Any]] = []
        self.exposures: list[Exposure] = []
        self.requests = 0

    def __call__(self, path: str, body: Any) -> FakeResponse:
        if path == sim.EVENTS:
            write_exposures(self.store, self.exposures)   # batched, as the API's writer does
            self.exposures = []
            self.posted += body["events"]
            inserted, duplicates = self.store.add_events(body["events"])
            return FakeResponse(202, {"received": len(body["events"]), "inserted": inserted,
                                      "duplicates": duplicates, "rejected": 0, "errors": []})
        assert path == sim.RECOMMENDATIONS
        a = assign(self.experiment, body["user_id"], body["session_id"])
        assert a is not None
        pipeline = self.experiment.variant(a.variant).pipeline or "hybrid"
        ctx = body["context"]
        result = self.rec.variant(pipeline).recommend(Request(
            user_id=body["user_id"], session_id=body["session_id"],
            timestamp=pd.Timestamp(ctx["timestamp"]), device=ctx["device"],
            cart=tuple(ctx["cart"]), recent_views=tuple(ctx["recent_views"]), k=body["k"]),
            explain=False)
        self.requests += 1
        rid = f"req{self.requests}"
        items = [r.item_id for r in result.items]
        self.exposures.append(Exposure(rid, self.experiment.name, a.variant, a.unit,
                                       tuple(items), "test", datetime.now(UTC)))
        return FakeResponse(200, {"request_id": rid, "variant": a.variant,
                                  "fallback": result.fallback,
                                  "items": [{"item_id": i} for i in items]})


@pytest.fixture(scope="module")
def rec(tiny_bundle: Path) -> HybridRecommender:
    return HybridRecommender.load(tiny_bundle)


def run_fake(rec: HybridRecommender, truth: ShopTruth, path: Path, seed: int
             ) -> tuple[sim.SimSummary, InProcessAPI]:
    with SQLiteEventStore(path) as store:
        api = InProcessAPI(rec, store)
        summary = sim.simulate(api, truth, sim.SimConfig(users=60, days=3, seed=seed, batch=37))
    return summary, api


def test_simulation_is_deterministic_and_well_formed(rec: HybridRecommender, tiny_shop: Path,
                                                     tmp_path: Path) -> None:
    truth = ShopTruth.load(tiny_shop)
    first, api = run_fake(rec, truth, tmp_path / "a.db", seed=5)
    again, api2 = run_fake(rec, truth, tmp_path / "b.db", seed=5)
    other, api3 = run_fake(rec, truth, tmp_path / "c.db", seed=6)
    assert api.posted == api2.posted and first.lines()[1:] == again.lines()[1:]
    assert api.posted != api3.posted
    events = pd.DataFrame(api.posted)
    assert events["event_id"].is_unique and len(events) == first.events_sent
    assert first.events_inserted == first.events_sent and first.error_count == 0
    imp = events[events["event_type"] == "impression"]
    assert (imp.groupby("request_id")["position"].agg(sorted)
            .map(lambda p: p == list(range(10)))).all()
    buys = events[events["event_type"] == "purchase"]
    assert buys["price"].notna().all() and (buys["price"] > 0).all()
    prices = truth.item_price[truth.item_index(buys["item_id"].to_numpy())]
    assert np.allclose(buys["price"], prices)
    ts = pd.to_datetime(events["timestamp"], utc=True)
    start = pd.Timestamp(sim.default_start(truth))
    assert (ts >= start).all() and (ts < start + pd.Timedelta(days=3, hours=2)).all()
    assert start.timestamp() >= truth.params.end and start.hour == 0
    # the funnel is the truth's: click with position bias, cart x buy = purchase_probability
    shopper = sim.Shopper(truth, sim.SimConfig())
    items, t = np.arange(20), int(start.timestamp())
    p_click, p_cart, p_buy = shopper.funnel(3, items, t, "app")
    assert np.allclose(p_click, truth.click_probability(3, items, np.arange(1, 21), at=t))
    assert np.allclose(p_cart * p_buy, truth.purchase_probability(3, items, at=t, devices="app"))
    assert p_click[0] > 0 and (p_cart >= p_cart * p_buy).all()
    # every click follows an impression of the same item in the same request
    shown = set(zip(imp["request_id"], imp["item_id"], strict=True))
    clicks = events[events["event_type"] != "impression"]
    assert all(k in shown for k in zip(clicks["request_id"], clicks["item_id"], strict=True))


def test_failures_are_counted_and_the_run_goes_on(rec: HybridRecommender, tiny_shop: Path,
                                                  tmp_path: Path) -> None:
    truth = ShopTruth.load(tiny_shop)
    with SQLiteEventStore(tmp_path / "e.db") as store:
        api = InProcessAPI(rec, store)
        calls = {"rec": 0, "events": 0}

        def flaky(path: str, body: Any) -> Any:
            kind = "rec" if path == sim.RECOMMENDATIONS else "events"
            calls[kind] += 1
            if kind == "rec" and calls[kind] % 3 == 0:
                return FakeResponse(500, {"detail": "boom"})
            if kind == "events" and calls[kind] == 2:
                raise httpx.ConnectError("connection refused")
            return api(path, body)

        summary = sim.simulate(flaky, truth, sim.SimConfig(users=40, days=2, seed=3, batch=50))
    assert summary.request_errors == calls["rec"] // 3 and summary.batch_errors == 1
    assert summary.requests == calls["rec"] and summary.events_inserted == (
        summary.events_sent - 50)
    assert any("HTTP 500" in e for e in summary.errors)
    assert any("ConnectError" in e for e in summary.errors)


def test_bad_configs_are_refused(tiny_shop: Path) -> None:
    truth = ShopTruth.load(tiny_shop)
    with pytest.raises(ConfigError, match="future"):
        sim.simulate(lambda p, b: FakeResponse(500, {}), truth,
                     sim.SimConfig(users=5, days=3, start=datetime.now(UTC) + timedelta(days=1)))
    n = len(truth.user_ids)
    with pytest.raises(ConfigError, match=f"has {n}"):
        sim.simulate(lambda p, b: FakeResponse(500, {}), truth, sim.SimConfig(users=n + 1))
    with pytest.raises(ConfigError, match="cart_share"):
        sim.SimConfig(cart_share=1.5)


# ---------------------------------------------------------------------- real HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulate_command_against_uvicorn(tiny_shop: Path, tiny_bundle: Path,
                                          tmp_path: Path) -> None:
    config = tmp_path / "serving.toml"
    config.write_text(SERVING_TOML.format(db=tmp_path / "events.db", bundle=tiny_bundle))
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "RECSYS_SERVING_CONFIG": str(config), "PYTHONPATH": str(ROOT),
           "RECSYS_WRITE_KEY": "w-key", "RECSYS_READ_KEY": "r-key"}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "serving.app:app_from_env",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        parser = argparse.ArgumentParser()
        sim.add_arguments(parser)
        summary_file = tmp_path / "summary.json"
        args = parser.parse_args(["--server", f"http://127.0.0.1:{port}", "--data",
                                  str(tiny_shop), "--users", "30", "--days", "2", "--seed", "2",
                                  "--json", str(summary_file), "--wait", "90"])
        with pytest.raises(ConfigError, match="RECSYS_WRITE_KEY"):   # no key, no events
            sim.simulate_command(args)
        os.environ["RECSYS_WRITE_KEY"] = "w-key"
        try:
            sim.simulate_command(args)
        finally:
            del os.environ["RECSYS_WRITE_KEY"]
        summary = json.loads(summary_file.read_text())
        assert summary["requests"] > 0 and summary["request_errors"] == 0, log.read_text()
        assert summary["events_inserted"] == summary["events_sent"] > 0
        deadline = time.monotonic() + 10
        while True:   # exposures are written in the background
            live = httpx.get(f"http://127.0.0.1:{port}/v1/experiments/pop-vs-hybrid",
                             headers={"X-API-Key": "r-key"}).json()
            units = sum(c["units"] for c in live["counts"].values())
            if units > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert 0 < units <= 30
    finally:
        server.terminate()
        server.wait(timeout=30)
