"""A shop without prices (catalog of ``item_id`` and category, events without a price): the
backtest report, its verdict and the gate work; the revenue metrics are absent with a note."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from evaluation.backtest import backtest, has_prices
from evaluation.business import NO_PRICES, REVENUE
from evaluation.gate import GateRules
from evaluation.report import Uncertainty, write_report
from pipelines.evaluate import build_backtest_report
from pipelines.gate import gate
from recsys import columns as C
from recsys.data.validate import load_dataset
from tests.conftest import tiny_pipeline_config

MODELS = ("hybrid", "buy_again_pop", "popularity")


@pytest.fixture(scope="module")
def unpriced_shop(tiny_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unpriced")
    events = pd.read_parquet(tiny_shop / "events.parquet").drop(columns=C.PRICE)
    items = pd.read_parquet(tiny_shop / "items.parquet")[[C.ITEM_ID, C.CATEGORY]]
    events.to_parquet(out / "events.parquet", index=False)
    items.to_parquet(out / "items.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def unpriced_folds(unpriced_shop: Path) -> list:
    dataset = load_dataset(unpriced_shop)
    assert not has_prices(dataset)
    return backtest(dataset, tiny_pipeline_config(), models=MODELS, ks=(5, 10), max_users=80)


def test_report_without_prices(unpriced_folds: list, unpriced_shop: Path,
                               tmp_path: Path) -> None:
    report = build_backtest_report(unpriced_folds, (5, 10), Uncertainty(n_resamples=200), None,
                                   unpriced_shop, 80)
    write_report(report, tmp_path)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["meta"]["prices"] is False and NO_PRICES in data["meta"]["notes"]
    for surface in ("for_you", "buy_again", "discover"):
        for name in MODELS:
            metrics = data["surfaces"][surface]["metrics"][name]
            assert metrics["ndcg@10"] is not None and metrics["conversion@10"] is not None
            assert not [m for m in metrics if m.split("@")[0] in REVENUE]   # absent, not 0
    assert all(data["metrics"][n]["ndcg@10"] is not None for n in MODELS)
    lifts = data["verdict"]["surfaces"]["for_you"]["lifts"]
    assert "lift" in lifts["ndcg@10"] and lifts["revenue_per_rec@10"] == {"note": "no prices"}
    assert data["verdict"]["sentence"].startswith("Best model by NDCG@10")
    summary = (tmp_path / "summary.md").read_text()
    assert NO_PRICES in summary and data["verdict"]["sentence"] in summary
    assert NO_PRICES in (tmp_path / "report.html").read_text()


def test_gate_skips_the_revenue_rules(unpriced_folds: list, unpriced_shop: Path,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    bundle = tmp_path / "champion"
    unpriced_folds[0].rec.save(bundle)      # fitted before the cutoff: scored as it is
    outcome = gate(bundle, bundle, unpriced_shop, rules=GateRules(n_resamples=200))
    assert outcome.exit_code == 0
    skipped = [r for r in outcome.rules if r.skipped]
    assert [r.metric for r in skipped] == ["revenue_per_rec@10"]
    assert "no prices" in skipped[0].reason
    out = capsys.readouterr().out
    assert "SKIP  max_relative_drop revenue_per_rec@10" in out and "1 skipped" in out
