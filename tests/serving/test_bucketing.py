"""Bucketing is stable (golden cases, across processes), splits by weight, and the experiment
config rejects bad files with a clear message; assignment follows the bucketing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import serving.experiments as experiments_module
from recsys.configfile import parse_config
from recsys.errors import ConfigError
from serving.bucketing import (
    BUCKETS,
    bucket,
    bucket_ranges,
    choose_variant,
    fnv1a32,
    in_traffic,
    traffic_bucket,
)
from serving.experiments import (
    Experiment,
    ExperimentsConfig,
    assign,
    load_experiments,
)

GOLDEN = Path(__file__).with_name("golden_buckets.json")
N_IDS = 100_000


@pytest.fixture(scope="module")
def user_ids() -> list[str]:
    return [f"user-{i}" for i in range(N_IDS)]


@pytest.fixture(scope="module")
def buckets(user_ids: list[str]) -> list[int]:
    return [bucket("s1", "ranker-test", u) for u in user_ids]


def test_fnv1a32_matches_the_standard_test_vectors() -> None:
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


def test_golden_cases() -> None:
    """These 50 cases must never change.

    They pin the hash, the key layout, the traffic hash and the weight ranges. If this test
    fails, the change reshuffles live users between variants mid-experiment (and invalidates
    every running experiment's analysis): revert it. Never regenerate the JSON file.
    """
    cases = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]
    assert len(cases) == 50
    for c in cases:
        where = f"{c['salt']}:{c['experiment']}:{c['unit']!r}"
        assert bucket(c["salt"], c["experiment"], c["unit"]) == c["bucket"], where
        assert traffic_bucket(c["salt"], c["experiment"], c["unit"]) == c["traffic_bucket"], where
        assert choose_variant(c["bucket"], c["weights"]) == c["variant"], where


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.2, 0.3, 0.5]])
def test_split_matches_weights_within_one_percent(buckets: list[int],
                                                  weights: list[float]) -> None:
    counts = Counter(choose_variant(b, weights) for b in buckets)
    for i, w in enumerate(weights):
        assert abs(counts[i] / N_IDS - w) < 0.01, (i, counts)


def test_buckets_are_spread_evenly(buckets: list[int]) -> None:
    assert min(buckets) >= 0 and max(buckets) < BUCKETS
    deciles = Counter(b * 10 // BUCKETS for b in buckets)
    assert all(abs(n / N_IDS - 0.1) < 0.01 for n in deciles.values()), deciles


def test_traffic_share_is_independent_of_the_variant(user_ids: list[str],
                                                     buckets: list[int]) -> None:
    inside = [in_traffic("s1", "ranker-test", u, 0.3) for u in user_ids]
    assert abs(sum(inside) / N_IDS - 0.3) < 0.01
    # among included units the split still follows the weights
    weights = [0.2, 0.3, 0.5]
    included = [choose_variant(b, weights) for b, ok in zip(buckets, inside, strict=True) if ok]
    counts = Counter(included)
    for i, w in enumerate(weights):
        assert abs(counts[i] / len(included) - w) < 0.01, counts


def test_raising_traffic_keeps_everyone_already_in(user_ids: list[str]) -> None:
    for u in user_ids[:5000]:
        if in_traffic("s1", "ranker-test", u, 0.1):
            assert in_traffic("s1", "ranker-test", u, 0.2)
    assert all(in_traffic("s1", "ranker-test", u, 1.0) for u in user_ids[:1000])


def test_salt_and_experiment_reshuffle(user_ids: list[str], buckets: list[int]) -> None:
    resalted = [bucket("s2", "ranker-test", u) for u in user_ids[:2000]]
    other = [bucket("s1", "other-test", u) for u in user_ids[:2000]]
    assert sum(a == b for a, b in zip(buckets, resalted, strict=False)) < 20
    assert sum(a == b for a, b in zip(buckets, other, strict=False)) < 20


def test_choose_variant_ranges_and_bad_weights() -> None:
    assert bucket_ranges([0.2, 0.3, 0.5]) == [(0, 2000), (2000, 5000), (5000, 10000)]
    assert [choose_variant(b, [0.2, 0.3, 0.5]) for b in (0, 1999, 2000, 4999, 5000, 9999)] == [
        0, 0, 1, 1, 2, 2]
    assert choose_variant(0, [0.0, 1.0]) == 1  # a zero-weight variant owns no bucket
    assert choose_variant(9999, [1 / 3] * 3) == 2
    with pytest.raises(ValueError, match="sum to 1"):
        choose_variant(5, [0.5, 0.4])  # never renormalised
    with pytest.raises(ValueError, match=">= 0"):
        choose_variant(5, [1.5, -0.5])
    with pytest.raises(ValueError, match="bucket must be"):
        choose_variant(BUCKETS, [1.0])


CHILD = """
import sys
from serving.bucketing import bucket
print(hash("user-1"))
print(",".join(str(bucket("s1", "ranker-test", f"user-{i}")) for i in range(2000)))
"""


def test_same_variant_across_processes_with_different_hash_seeds(buckets: list[int]) -> None:
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        outputs.append(out)
    # the seeds really differ (so Python's hash() would have split this user)...
    assert outputs[0][0] != outputs[1][0]
    # ...yet both processes, and this one, bucket every id alike
    expected = ",".join(map(str, buckets[:2000]))
    assert outputs[0][1] == outputs[1][1] == expected


# --- experiment config and assignment -------------------------------------------------------

def example_toml() -> str:
    """The example file in serving/experiments.py's docstring: it must stay loadable."""
    doc = experiments_module.__doc__ or ""
    block = doc.split("Example file", 1)[1].split("::\n", 1)[1].split("\nUsage::", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def load(tmp_path: Path, text: str, known: set[str] | None = None) -> ExperimentsConfig:
    path = tmp_path / "serving.toml"
    path.write_text(text)
    return load_experiments(path, known)


VARIANTS = """
[[experiments.variants]]
name = "control"
weight = {w1}
pipeline = "popularity"

[[experiments.variants]]
name = "{name2}"
weight = {w2}
pipeline = "{pipeline2}"
"""


def one_experiment(w1: float = 0.5, w2: float = 0.5, name2: str = "treatment",
                   pipeline2: str = "hybrid", extra: str = "") -> str:
    return ('[[experiments]]\nname = "exp1"\nsalt = "s"\n' + extra
            + VARIANTS.format(w1=w1, w2=w2, name2=name2, pipeline2=pipeline2))


def test_docstring_example_loads(tmp_path: Path) -> None:
    config = load(tmp_path, example_toml(), known={"hybrid-2024-06-01"})
    exp = config.get("ranker-vs-popularity")
    assert exp.traffic == 0.5 and exp.weights == [0.5, 0.5]
    assert exp.variant("treatment").bundle == "hybrid-2024-06-01"
    assert load_experiments(None).experiments == []


@pytest.mark.parametrize(("text", "message"), [
    (one_experiment(0.5, 0.4), "variant weights sum to 0.9, expected 1"),
    (one_experiment(name2="control"), "duplicate variant name 'control'"),
    (one_experiment(pipeline2="deep"), "unknown pipeline 'deep' (expected one of hybrid, "),
    (one_experiment(extra="trafic = 0.5\n"), "unknown key 'experiments.0.trafic'"),
    (one_experiment(extra="traffic = 0\n"), "experiments.0.traffic"),
    (one_experiment() + one_experiment(), "duplicate experiment name 'exp1'"),
    ('[[experiments]]\nname = "e"\nsalt = "s"\n[[experiments.variants]]\nname = "v"\n'
     'weight = 1.0\n', "needs a bundle, a pipeline"),
])
def test_bad_config_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, text)


def test_weights_within_tolerance_are_accepted_as_written(tmp_path: Path) -> None:
    exp = load(tmp_path, one_experiment(0.1 + 0.2, 0.7)).get("exp1")
    assert exp.weights == [0.1 + 0.2, 0.7]  # not renormalised


def test_unknown_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="variant 'treatment': unknown bundle "
                                          "'hybrid-2024-06-01' .known bundles: b1, b2."):
        load(tmp_path, example_toml(), known={"b1", "b2"})


def experiment(traffic: float = 1.0, active: bool = True) -> Experiment:
    return parse_config(Experiment, {
        "name": "exp1", "salt": "s", "traffic": traffic, "active": active,
        "variants": [{"name": "a", "weight": 0.2, "pipeline": "popularity"},
                     {"name": "b", "weight": 0.8, "bundle": "b1"}]})


def test_assign_uses_user_id_then_session_id() -> None:
    exp = experiment()
    a = assign(exp, "u1", "sess-9")
    assert a is not None and a.unit == "u1" and a.unit_type == "user_id"
    assert a.bucket == bucket("s", "exp1", "u1")
    assert a.variant == ["a", "b"][choose_variant(a.bucket, [0.2, 0.8])]
    s = assign(exp, None, "sess-9")
    assert s is not None and s.unit == "sess-9" and s.unit_type == "session_id"
    assert assign(exp, "", "sess-9") == s
    assert assign(exp, None, None) is None
    assert assign(experiment(active=False), "u1", None) is None


def test_assign_respects_traffic_and_weights() -> None:
    exp = experiment(traffic=0.5)
    results = [assign(exp, f"user-{i}", None) for i in range(20_000)]
    inside = [r for r in results if r is not None]
    assert abs(len(inside) / 20_000 - 0.5) < 0.02
    share_b = sum(r.variant == "b" for r in inside) / len(inside)
    assert abs(share_b - 0.8) < 0.02
