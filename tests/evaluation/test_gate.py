"""The deployment gate: rules file, verdicts, and ``recsys gate`` on the tiny bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from evaluation.gate import GateRules, check_gate
from evaluation.offline import ModelResult
from pipelines.cli_args import add_gate_arguments
from pipelines.gate import gate, gate_command
from recsys.configfile import load_config, parse_config
from recsys.errors import ConfigError
from tests.evaluation.test_report import TINY_TOML

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gate.toml"
FAST = {"n_resamples": 300}


def _result(name: str, ndcg: np.ndarray, revenue: float, coverage: float) -> ModelResult:
    n = len(ndcg)
    per_user = {"ndcg@10": ndcg, "revenue_per_rec@10": np.full(n, revenue),
                "orders@10": np.zeros(n), "revenue_per_user@10": np.zeros(n),
                "aov@10": np.full(n, np.nan)}
    return ModelResult(name, {}, per_user, {"coverage@10": coverage})


def test_config_file_loads_and_defaults_are_sane() -> None:
    rules = load_config(GateRules, CONFIG)
    assert "ndcg@10" in rules.not_worse and rules.ks() == (10,)
    assert "coverage@10" in rules.min_value and "revenue_per_rec@10" in rules.max_relative_drop
    assert GateRules() == rules   # the built-in defaults are the file's values


@pytest.mark.parametrize("data, match", [
    ({"not_worse": ["ndcg"]}, "expected NAME@K"),
    ({"not_worse": ["coverage@10"]}, "unknown 'coverage'"),   # not a per-user metric
    ({"max_relative_drop": {"ndcg@10": 1.5}}, "fraction"),
    ({"min_value": {"gmv@10": 1.0}}, "unknown 'gmv'"),
    ({"pipeline": "magic"}, "gate pipeline"),
    ({"thresholds": {}}, "unknown key 'thresholds'"),
])
def test_bad_rules_are_rejected_naming_the_key(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(GateRules, data, "gate.toml")


def test_check_gate_verdicts() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 500)
    rules = GateRules(not_worse=("ndcg@10",), max_relative_drop={"revenue_per_rec@10": 0.05},
                      min_value={"coverage@10": 0.1}, **FAST)
    champion = _result("champion", base, 1.0, 0.3)
    same = check_gate(_result("c", base.copy(), 0.97, 0.3), champion, rules)
    assert same.passed and same.exit_code == 0 and len(same.rules) == 3
    worse = check_gate(_result("c", base - 0.05, 0.90, 0.05), champion, rules)
    assert not worse.passed and worse.exit_code == 1
    assert [r.passed for r in worse.rules] == [False, False, False]
    assert "significantly worse" in worse.rules[0].reason
    assert worse.lines()[-1].startswith("gate: FAIL (3 of 3 rules")
    noisy = check_gate(_result("c", base - 0.001 + rng.normal(0, 0.3, 500), 1.0, 0.3),
                       champion, rules)
    assert noisy.rules[0].passed   # within noise: not significantly worse


@pytest.fixture(scope="module")
def before_cutoff(tiny_folds: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle fitted on the events before the default cutoff: scored as it is."""
    out = tmp_path_factory.mktemp("gate") / "champion"
    tiny_folds[0].rec.save(out)
    return out


def test_gate_passes_a_bundle_against_itself(tiny_shop: Path, before_cutoff: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    outcome = gate(before_cutoff, before_cutoff, tiny_shop, rules=GateRules(**FAST))
    assert outcome.exit_code == 0 and outcome.users >= 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert "candidate: the bundle as it is" in lines[0]
    assert lines[-1].startswith("gate: PASS")
    assert all(line.startswith("PASS") for line in lines[1:-1])
    assert len(lines[1:-1]) == len(outcome.rules)


def test_a_worse_challenger_is_refused(tiny_shop: Path, before_cutoff: Path,
                                       tmp_path: Path) -> None:
    """A config that serves popularity alone, fitted before the window as production would
    have, fails against the champion: the gate stops it."""
    worse = tmp_path / "worse.toml"
    disabled = "".join(f"[hybrid.sources.{s}]\nenabled = false\n" for s in (
        "cf", "content", "i2i_cf", "i2i_content", "copurchase", "itemknn", "repeat", "ppop",
        "tifu", "trending", "seasonal", "popular_cat"))
    worse.write_text(TINY_TOML + disabled)
    outcome = gate(worse, before_cutoff, tiny_shop, rules=GateRules(**FAST))
    assert outcome.exit_code == 1
    assert not next(r for r in outcome.rules if r.metric == "ndcg@10").passed


def test_a_newer_bundle_is_refitted_before_the_window(tiny_shop: Path, tiny_bundle: Path,
                                                      before_cutoff: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A bundle that saw the window (trained on every event) is not scored on it: its config
    is fitted on the events before the window."""
    outcome = gate(tiny_bundle, before_cutoff, tiny_shop, rules=GateRules(**FAST))
    assert "candidate: its config refitted before the window" in capsys.readouterr().out
    assert outcome.users >= 2


def test_gate_fails_an_impossible_coverage_floor(tiny_shop: Path, before_cutoff: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "gate.toml"
    rules.write_text('n_resamples = 300\nnot_worse = ["ndcg@10"]\n'
                     '[min_value]\n"coverage@10" = 1.01\n')
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    args = parser.parse_args(["--candidate", str(before_cutoff), "--champion",
                              str(before_cutoff), "--data", str(tiny_shop), "--rules",
                              str(rules)])
    assert gate_command(args) == 1
    out = capsys.readouterr().out
    assert "FAIL  min_value coverage@10" in out and "PASS  not_worse ndcg@10" in out
    assert "gate: FAIL (1 of 4 rules: min_value coverage@10)" in out
