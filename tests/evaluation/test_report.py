"""The backtest report on the tiny shop: files, keys, verdict, surfaces, segments, intervals,
escaping, ``recsys evaluate`` end to end, and the page rendering in headless Chromium."""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evaluation.backtest import DEFAULT_BASELINES
from evaluation.report import HEADLINE, Uncertainty, off_policy_section, write_report
from evaluation.report_html import render
from evaluation.segments import user_segmentations
from pipelines.cli_args import add_evaluate_arguments
from pipelines.evaluate import build_backtest_report, evaluate, evaluate_command
from recsys.errors import ConfigError
from tests.conftest import SHARED, tiny_pipeline_config

MODELS = ["hybrid", *DEFAULT_BASELINES]
TINY_TOML = """ranker_queries = 400
[mf]
iterations = 10
factors = 16
eval_every = 5
[content]
epochs = 2
max_pairs_per_epoch = 4000
batch_size = 256
dim = 32
progress = false
[hybrid.ranker]
max_rounds = 60
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def evaluated(tiny_folds: list, tiny_shop: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("report")
    report = build_backtest_report(tiny_folds, (5, 10, 20), Uncertainty(n_resamples=300), None,
                                   tiny_shop, None)
    write_report(report, out)
    return report, out


def test_writes_the_three_files_with_every_model(evaluated) -> None:
    report, out = evaluated
    assert {p.name for p in out.iterdir()} >= {"report.html", "metrics.json", "summary.md"}
    data = json.loads((out / "metrics.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data == report
    assert set(data) >= {"meta", "verdict", "surfaces", "metrics", "headline", "comparisons",
                         "tests", "segments", "items", "popularity_bias", "ope", "bundle"}
    assert data["meta"]["models"] == MODELS and data["meta"]["ks"] == [5, 10, 20]
    assert set(data["surfaces"]) == {"for_you", "buy_again", "discover"}
    assert data["verdict"]["sentence"].startswith("Best model by NDCG@10")
    for model in MODELS:
        for k in (5, 10, 20):
            for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "new_ndcg",
                      "ctr", "conversion", "purchase_precision", "revenue_per_rec",
                      "revenue_per_user", "aov", "ild_category", "ild_embedding", "novelty",
                      "serendipity", "mean_popularity", "coverage", "gini"):
                assert f"{m}@{k}" in data["metrics"][model]
    against = data["verdict"]["surfaces"]["for_you"]["best_baseline"]
    assert data["meta"]["against"] == against                  # the best baseline
    assert set(data["comparisons"]) == set(MODELS) - {against}
    assert data["bundle"]["data"]["spans"]["history"] and data["bundle"]["config"]
    assert data["ope"]["status"] == "skipped" and "not requested" in data["ope"]["note"]
    summary = (out / "summary.md").read_text()
    assert all(f"| {m} |" in summary for m in MODELS)
    # the verdict first, then what the backtest was (a backtest has no bundle version)
    assert summary.split("\n")[2] == f"**{data['verdict']['sentence']}**"
    assert "bundle:" not in summary and "- backtest: 1 fold, cutoff " in summary
    assert f"{data['meta']['users']:,} shoppers" in summary


def test_intervals_contain_the_estimate(evaluated) -> None:
    report, _ = evaluated
    for model, values in report["headline"].items():
        for m in HEADLINE:
            v = values[f"{m}@10"]
            assert v["low"] <= v["estimate"] <= v["high"], (model, m)
            assert v["estimate"] == pytest.approx(report["metrics"][model][f"{m}@10"])
    for model, tests in report["comparisons"].items():
        for m, t in tests.items():
            assert t["low"] <= t["diff"] <= t["high"], (model, m)
            assert t["significant"] == (t["p_value"] < report["meta"]["alpha"])


def test_segments_partition_the_users(evaluated, tiny_folds: list) -> None:
    report, _ = evaluated
    n = report["meta"]["users"]
    assert set(report["segments"]) == {"repeat habit", "activity", "device", "category"}
    for name, seg in report["segments"].items():
        assert sum(row["users"] for row in seg["rows"]) == n, name
    fold = tiny_folds[0]
    segs, _ = user_segmentations(fold.rec, fold.window, fold.events)
    for seg in segs:
        sizes = seg.sizes()
        assert sum(sizes.values()) == len(fold.window.users)
        assert set(seg.labels) == set(seg.order)
    tested = [t for seg in report["segments"].values() for row in seg["rows"]
              for per_model in row["tests"].values() for t in per_model.values()
              if t.get("tested")]
    # BH never lowers a p-value (adjust() rounds to 15 decimals)
    assert tested and all(t["p_adjusted"] >= t["p_value"] - 1e-12 for t in tested)
    items = report["items"]
    assert items["users_with_cold"] + items["users_with_warm"] >= n


def test_html_is_self_contained_and_escaped(evaluated) -> None:
    report, out = evaluated
    page = (out / "report.html").read_text()
    assert '<table id="summary">' in page and "<svg" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "duplicate element ids"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", page)
    assert "<link" not in page and "<script" not in page
    evil = copy.deepcopy(report)
    evil["meta"]["data_dir"] = "<script>alert('x')</script>"
    evil["bundle"]["config"] = {"note": "</pre><img src=x onerror=alert(1)>"}
    evil["segments"]["category"]["rows"][0]["segment"] = "<b>&bold"
    html = render(evil)
    assert "<script>" not in html and "<img" not in html and "<b>&bold" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;&amp;bold" in html


def test_cli_arguments_run_a_backtest(tiny_shop: Path, tmp_path: Path) -> None:
    """``recsys evaluate`` as a user runs it: it fits before the cutoff by itself."""
    config = tmp_path / "train.toml"
    config.write_text(TINY_TOML)
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(["--data", str(tiny_shop), "--report", str(tmp_path / "r"),
                              "--config", str(config), "--baselines", "popularity",
                              "--k", "10", "--max-users", "30", "--resamples", "200",
                              "--open-bandit", str(tmp_path / "none")])
    evaluate_command(args)
    data = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert data["meta"]["models"] == ["hybrid", "popularity"] and data["meta"]["users"] == 30
    assert data["meta"]["against"] == "popularity"
    assert "not found" in data["ope"]["note"]
    assert data["bundle"]["config"]["ranker_queries"] == tiny_pipeline_config().ranker_queries


def test_bad_arguments_fail_before_any_fit(tiny_shop: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown baseline"):
        evaluate(tiny_shop, report_dir=tmp_path, baselines=("bogus",), quiet=True)
    with pytest.raises(ConfigError, match="k values"):
        evaluate(tiny_shop, report_dir=tmp_path, ks=(0,), quiet=True)
    with pytest.raises(ConfigError, match="'hybrid' is always evaluated"):
        evaluate(tiny_shop, report_dir=tmp_path, baselines=("hybrid",), quiet=True)


@pytest.mark.skipif(not (SHARED / "open_bandit" / "bts").is_dir(),
                    reason="shared/datasets/open_bandit not present")
def test_off_policy_section_reports_the_strict_check_honestly() -> None:
    ope = off_policy_section(SHARED / "open_bandit")
    assert ope["status"] == "ok" and ope["campaigns"] == 3
    assert ope["consistent_passed"] == 3
    # the strict criterion fails on the 10k-row samples (docs/metrics.md); the note says why
    assert ope["strict_passed"] < 3 and "not a usable acceptance test" in ope["note"]


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(evaluated, tmp_path: Path) -> None:
    _, out = evaluated
    assert CHROMIUM is not None
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--dump-dom",
           (out / "report.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert '<table id="summary">' in dom and '<table id="verdict">' in dom and "hybrid" in dom
    assert dom.count("<svg") >= 4 and 'id="sec-segments"' in dom
    # page problems (script errors, blocked or missing resources) are logged as CONSOLE lines
    errors = [line for line in proc.stderr.splitlines()
              if "CONSOLE" in line or "Uncaught" in line or "Failed to load" in line]
    assert not errors, errors
