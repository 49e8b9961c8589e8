from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.ope import (
    CAMPAIGNS,
    BanditLog,
    evaluate_policy,
    ips,
    load_open_bandit,
    observed_ctr,
    snips,
    validate_uniform_from_bts,
)
from evaluation.policies import deterministic_policy, uniform_policy
from recsys.errors import ConfigError, DataError

OBD = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "open_bandit"
needs_obd = pytest.mark.skipif(not (OBD / "bts" / "all" / "all.csv.gz").is_file(),
                               reason=f"Open Bandit sample not found at {OBD} "
                                      "(shared/datasets is not checked out beside the repo)")


def test_hand_computed_estimators() -> None:
    r, pb, pe = [1, 0, 1, 0], [0.5, 0.5, 0.25, 0.25], [0.5, 0.25, 0.5, 0.0]
    # w = [1, 0.5, 2, 0]; terms w r = [1, 0, 2, 0]
    est = ips(r, pb, pe)
    assert est.value == pytest.approx(0.75)                       # 3 / 4
    assert est.se == pytest.approx(np.sqrt(2.75 / 3) / 2)           # sd(ddof=1) / sqrt(4)
    assert est.high - est.value == pytest.approx(1.959964 * est.se, rel=1e-5)
    assert est.ess == pytest.approx(3.5**2 / 5.25)                  # (sum w)^2 / sum w^2
    est = snips(r, pb, pe)
    assert est.value == pytest.approx(3 / 3.5)                      # sum w r / sum w
    # w (r - V) = [1/7, -3/7, 2/7, 0]; mean of squares = 14/49/4 = 1/14; mean w = 0.875
    assert est.se == pytest.approx(np.sqrt(1 / 14) / (0.875 * 2))
    # Wilson interval for 2 clicks in 10 rows: [0.0567, 0.5098]
    ctr = observed_ctr([1, 1] + [0] * 8)
    assert (ctr.value, round(ctr.low, 4), round(ctr.high, 4)) == (0.2, 0.0567, 0.5098)
    with pytest.raises(DataError, match="behaviour probabilities"):
        ips(r, [0, 0.5, 0.5, 0.5], pe)
    with pytest.raises(DataError, match="one probability per row"):
        snips(r, pb, [0.5])
    assert np.isnan(snips(r, pb, [0, 0, 0, 0]).value)              # no support


def _simulated_log(rng: np.random.Generator, pb: np.ndarray, theta: np.ndarray,
                   n: int) -> pd.DataFrame:
    """Rows of a 3-slot bandit: position uniform, item ~ pb[position], click ~ theta."""
    pos = rng.integers(1, 4, n)
    cum = pb.cumsum(axis=1)[pos - 1]
    item = (rng.random(n)[:, None] > cum).sum(axis=1)
    click = (rng.random(n) < theta[item, pos - 1]).astype(int)
    return pd.DataFrame({"item_id": item, "position": pos, "click": click,
                         "propensity_score": pb[pos - 1, item]})


def test_ips_snips_unbiased_and_cover_truth_in_simulation() -> None:
    rng = np.random.default_rng(0)
    n_items = 10
    pb = rng.dirichlet(np.full(n_items, 2.0), size=3)           # a skewed behaviour policy
    theta = rng.uniform(0.05, 0.3, (n_items, 3))                 # CTR by item and position
    truth = theta.mean()                                         # uniform policy's CTR
    runs, cover = 300, {"ips": 0, "snips": 0}
    values: dict[str, list[float]] = {"ips": [], "snips": []}
    for _ in range(runs):
        log = BanditLog(_simulated_log(rng, pb, theta, 3000), n_items, "sim", "all")
        for name, est in evaluate_policy(log, uniform_policy(n_items)).items():
            cover[name] += est.low <= truth <= est.high
            values[name].append(est.value)
    for name in ("ips", "snips"):
        assert 0.91 <= cover[name] / runs <= 0.98, (name, cover[name] / runs)
        assert np.mean(values[name]) == pytest.approx(truth, rel=0.02)


def test_bootstrap_interval_is_seeded_and_covers_in_simulation() -> None:
    rng = np.random.default_rng(2)
    n_items = 10
    pb = rng.dirichlet(np.full(n_items, 2.0), size=3)
    theta = rng.uniform(0.05, 0.3, (n_items, 3))
    truth, runs, cover = theta.mean(), 100, 0
    for s in range(runs):
        f = _simulated_log(rng, pb, theta, 2000)
        est = snips(f["click"], f["propensity_score"], np.full(len(f), 1 / n_items),
                    interval="bootstrap", n_resamples=300, seed=s)
        cover += est.low <= truth <= est.high
    assert 0.88 <= cover / runs <= 1.0
    args = ([1, 0, 1, 0, 1], [0.5] * 5, [0.2, 0.4, 0.6, 0.8, 1.0])
    a = ips(*args, interval="bootstrap", seed=3)
    assert a == ips(*args, interval="bootstrap", seed=3) and a.low <= a.value <= a.high
    with pytest.raises(ConfigError, match="interval"):
        ips(*args, interval="exact")  # type: ignore[arg-type]


def test_deterministic_ranker_on_uniform_log_recovers_its_ctr() -> None:
    rng = np.random.default_rng(1)
    n_items = 8
    theta = rng.uniform(0.02, 0.4, (n_items, 3))
    ranking = np.array([3, 0, 5])
    truth = np.mean([theta[ranking[k], k] for k in range(3)])
    frame = _simulated_log(rng, np.full((3, n_items), 1 / n_items), theta, 200_000)
    log = BanditLog(frame, n_items, "random", "all")
    est = evaluate_policy(log, deterministic_policy(lambda rows: np.tile(ranking, (len(rows), 1))))
    assert est["snips"].low <= truth <= est["snips"].high
    assert est["snips"].value == pytest.approx(truth, abs=0.01)


def test_loader_rejects_bad_files(tmp_path: Path) -> None:
    folder = tmp_path / "random" / "men"
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"timestamp": ["2019-11-24"] * 2, "item_id": [0, 1], "position": [1, 2],
                          "click": [0, 1], "propensity_score": [0.5, 0.5]})
    frame.to_csv(folder / "men.csv.gz")
    log = load_open_bandit(tmp_path, "random", "men")
    assert log.n_items == 2 and len(log.frame) == 2
    frame.assign(propensity_score=[0.5, 0.0]).to_csv(folder / "men.csv.gz")
    with pytest.raises(DataError, match="bad propensity_score 0.0 at row 1"):
        load_open_bandit(tmp_path, "random", "men")
    frame.drop(columns="click").to_csv(folder / "men.csv.gz")
    with pytest.raises(DataError, match="Missed columns \\['click'\\]"):
        load_open_bandit(tmp_path, "random", "men")
    with pytest.raises(DataError, match="not found"):
        load_open_bandit(tmp_path, "bts", "men")
    with pytest.raises(DataError, match="unknown log"):
        load_open_bandit(tmp_path, "greedy", "men")


@needs_obd
def test_real_logs_propensity_convention_and_on_policy_identity() -> None:
    for campaign in CAMPAIGNS:
        log = load_open_bandit(OBD, "random", campaign)
        # the random logs record P(item at this position) = 1 / n_items
        np.testing.assert_allclose(log.frame["propensity_score"], 1 / log.n_items, rtol=1e-6)
        est = evaluate_policy(log, uniform_policy(log.n_items))
        ctr = log.frame["click"].mean()
        assert est["ips"].value == pytest.approx(ctr, rel=1e-5)   # all weights ~ 1
        assert est["snips"].value == pytest.approx(ctr)


@needs_obd
def test_real_logs_deterministic_ranker() -> None:
    log = load_open_bandit(OBD, "random", "men")
    ranking = np.array([14, 10, 9])
    est = evaluate_policy(log, deterministic_policy(lambda rows: np.tile(ranking,
                                                                          (len(rows), 1))))
    f = log.frame
    agree = f["item_id"].to_numpy() == ranking[f["position"].to_numpy() - 1]
    # SNIPS = CTR on the rows where the ranker agrees with the log; IPS = n_items x clicks / n
    assert est["snips"].value == pytest.approx(f["click"][agree].mean())
    assert est["ips"].value == pytest.approx(34 * f["click"][agree].sum() / len(f), rel=1e-5)
    assert est["snips"].ess == pytest.approx(agree.sum(), rel=1e-6)


@needs_obd
@pytest.mark.parametrize("interval", ["normal", "bootstrap"])
def test_uniform_from_bts_validation_table(interval: str) -> None:
    table = validate_uniform_from_bts(OBD, interval=interval)  # type: ignore[arg-type]
    assert table["campaign"].tolist() == list(CAMPAIGNS)
    assert table[["observed_ctr", "ips", "snips"]].notna().all().all()
    assert (table["snips_low"] <= table["snips"]).all() and (table["ips"] > 0).all()
    # the estimate agrees with the truth within its own 95% error bar, for every campaign
    assert table["consistent"].all(), table.to_string()


@needs_obd
@pytest.mark.xfail(strict=True, reason=(
    "criterion 'SNIPS point inside the random-log 95% CI' fails on these 10k-row samples: "
    "SNIPS all 0.00233 vs [0.00277, 0.00521], men 0.00319 vs [0.00345, 0.00613], "
    "women 0.00237 vs [0.00345, 0.00613]. ESS of the BTS weights is 340 / 656 / 2 (one women "
    "row has propensity 1e-6, weight 21,739): SNIPS's sampling sd is 5x / 4x / 67x the "
    "observed CTR's SE, and a seeded simulation with an unbiased SNIPS passes it "
    "~38% / ~43% / ~4% of the time. See docs/metrics.md"))
def test_uniform_from_bts_strict_acceptance() -> None:
    assert validate_uniform_from_bts(OBD)["within"].all()
