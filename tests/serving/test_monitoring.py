"""Drift and health monitoring: PSI flags a shifted feature and not an unshifted one; the
unknown-item alert fires on events for items the bundle never saw (and not on known ones),
writes the retrain trigger and shows in /metrics; ``recsys monitor`` writes HTML and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipelines.monitor import fetch, write_report
from recsys.profile import FeatureProfile
from serving.app import create_app
from serving.drift import FeatureSample, IngestWindow
from serving.health import ServedWindow
from serving.monitoring import evaluate
from serving.settings import MonitoringSettings
from tests.serving.conftest import READ_KEY, WRITE_KEY

NAMES = ["price_ratio", "age_days", "cf_score"]


def fake_bundle(profile: FeatureProfile) -> Any:
    rec = SimpleNamespace(profile=profile, features=SimpleNamespace(names=NAMES),
                          items=list(range(50)))
    return SimpleNamespace(version="v1", recommender=rec)


def test_psi_flags_a_shifted_feature_and_not_an_unshifted_one() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, 3))
    profile = FeatureProfile.fit(train, NAMES, rng.normal(size=5000))
    settings = MonitoringSettings(min_rows=1000, feature_psi=0.25, score_psi=0.25)

    def run(rows: np.ndarray) -> dict[str, Any]:
        sample = FeatureSample(10_000)
        sample.record("v1", rows, rng.normal(size=len(rows)))
        report = evaluate(settings, fake_bundle(profile), sample, IngestWindow(10),
                          ServedWindow(10))
        return {c.name: c for c in report.checks} | {"psi": report.psi}

    same = run(rng.normal(size=(3000, 3)))
    assert not same["feature_psi"].firing and not same["score_psi"].firing
    assert max(same["psi"].values()) < 0.1
    shifted = rng.normal(size=(3000, 3))
    shifted[:, 1] += 1.0                     # item age moved by one standard deviation
    out = run(shifted)
    assert out["feature_psi"].firing and "age_days" in out["feature_psi"].detail
    assert out["psi"]["age_days"] > 0.25 and out["psi"]["price_ratio"] < 0.1
    few = run(shifted[:500])                 # under min_rows: no verdict, no alert
    assert few["feature_psi"].value is None and not few["feature_psi"].firing


def test_a_new_bundle_version_restarts_the_sample() -> None:
    sample = FeatureSample(max_rows=100)
    sample.record("v1", np.zeros((60, 2)), np.zeros(60))
    sample.record("v1", np.ones((60, 2)), np.ones(60))
    assert sample.snapshot()[1].shape == (60, 2)          # the oldest block left
    sample.record("v2", np.ones((5, 2)), np.ones(5))
    version, rows, _ = sample.snapshot()
    assert version == "v2" and rows.shape == (5, 2)


def events(ids: list[str], prefix: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [{"event_id": f"{prefix}{n}", "user_id": f"u{n}", "item_id": item,
             "event_type": "view", "timestamp": now} for n, item in enumerate(ids)]


@pytest.fixture
def client(make_settings: Any, tmp_path: Path) -> Any:
    settings = make_settings(experiments=[], monitoring={
        "min_rows": 20, "min_events": 20, "interval_s": 3600,
        "retrain_trigger": str(tmp_path / "retrain.trigger"), "retrain_cooldown_s": 0,
        # 50 served rows of one minute: the drift checks have their own test above
        "retrain_on": ["unknown_item_rate"]})
    with TestClient(create_app(settings), headers={"X-API-Key": WRITE_KEY}) as c:
        yield c


def test_monitoring_endpoint_metrics_alert_and_trigger(client: TestClient, tmp_path: Path
                                                       ) -> None:
    state = client.app.state.serving    # type: ignore[attr-defined]
    rec = state.bundles["default"].recommender
    for user in rec.sample_users(10):
        assert client.post("/v1/recommendations", json={"user_id": user, "k": 5}
                           ).status_code == 200
    known = [str(i) for i in rec.items.external_ids[:40]]
    assert client.post("/v1/events", json={"events": events(known, "k")}).status_code == 202
    read = {"X-API-Key": READ_KEY}
    body = client.get("/v1/monitoring", headers=read).json()
    assert body["rows"] == 50 and "score" in body["psi"] and len(body["psi"]) > 10
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["unknown_item_rate"]["value"] == 0 and not checks["unknown_item_rate"]["firing"]
    assert checks["ingest_lag_s"]["value"] < 60
    assert not (tmp_path / "retrain.trigger").exists()
    metrics = client.get("/metrics", headers=read).text
    assert 'recsys_alert{check="unknown_item_rate"} 0.0' in metrics
    assert 'recsys_feature_psi{feature="score"}' in metrics
    assert 'recsys_monitor_value{check="coverage"}' in metrics

    # a launched category: shoppers look at items the bundle was never trained with
    new = [f"new-{n}" for n in range(20)]
    assert client.post("/v1/events", json={"events": events(new, "n")}).status_code == 202
    body = client.get("/v1/monitoring", headers=read).json()
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["unknown_item_rate"]["firing"] and body["alert"]
    assert checks["unknown_item_rate"]["value"] == pytest.approx(20 / 60)
    assert "unknown_item_rate" in (tmp_path / "retrain.trigger").read_text()
    metrics = client.get("/metrics", headers=read).text
    assert 'recsys_alert{check="unknown_item_rate"} 1.0' in metrics

    # recsys monitor's report from the same endpoint
    out = tmp_path / "report"
    report = fetch(client, READ_KEY)
    json_path, html_path = write_report(report, out)
    saved = json.loads(json_path.read_text())
    assert saved["firing"] == body["firing"] and saved["workers"][0]["rows"] == 50
    html = html_path.read_text()
    assert "ALERT: " in html and "unknown_item_rate" in html.split("ALERT: ")[1].split("<")[0]
    assert html.count("<svg") == 2       # PSI per feature; training vs live histograms
    assert client.get("/v1/monitoring").status_code == 401        # the read key is needed


def test_the_example_config_spells_out_the_defaults() -> None:
    from serving.settings import load_settings

    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "configs" / "serving.toml")
    assert settings.monitoring == MonitoringSettings()
    assert settings.registry is None and settings.registry_poll_s == 2.0
