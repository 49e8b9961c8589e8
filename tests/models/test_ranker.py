"""The LambdaMART ranker: learns graded relevance, stops early, explains with path attribution
that adds up to its score and agrees with TreeSHAP on the top feature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.errors import DataError, NotFittedError
from recsys.models.ranker import Ranker, RankerConfig, sample_negatives


def data(seed: int = 0, queries: int = 300, per: int = 30) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((queries * per, 6)).astype(np.float32)
    utility = 2 * x[:, 0] - x[:, 1] + 0.3 * rng.standard_normal(len(x))
    y = np.digitize(utility, [1.0, 2.0, 3.0, 4.0]).astype(np.int32)
    return x, y, np.full(queries, per)


def test_learns_and_stops_early(tmp_path: Path) -> None:
    x, y, groups = data()
    ranker = Ranker(RankerConfig(max_rounds=400, early_stopping_rounds=10)).fit(
        x, y, groups, [f"f{i}" for i in range(6)])
    assert 1 <= ranker.best_iteration_ < 400
    best = ranker.history_[ranker.best_iteration_ - 1]["valid_ndcg@10"]
    assert best == max(h["valid_ndcg@10"] for h in ranker.history_)
    assert best > 0.8
    imp = ranker.importances()
    assert imp["f0"] > imp["f3"] and imp["f1"] > imp["f3"]
    ranker.save(tmp_path)
    loaded = Ranker.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(x[:100]), ranker.predict(x[:100]), rtol=1e-6)


def test_leaf_scores_and_path_attribution() -> None:
    x, y, groups = data(1)
    ranker = Ranker(RankerConfig(max_rounds=80, early_stopping_rounds=80)).fit(
        x, y, groups, [f"f{i}" for i in range(6)])
    scores, leaves = ranker.score_leaves(x[:500])
    np.testing.assert_allclose(scores, ranker.predict(x[:500]), rtol=1e-5, atol=1e-6)
    path = ranker.explain_leaves(leaves)
    shap = ranker.contributions_shap(x[:500])
    # both decompose the same prediction: contributions differ only by the constant bias
    bias_path = scores - path.sum(axis=1)
    bias_shap = scores - shap.sum(axis=1)
    assert np.ptp(bias_path) < 1e-4 and np.ptp(bias_shap) < 1e-4
    # the feature a reason would cite (largest path contribution) pushes the score up under
    # TreeSHAP too, and the two attributions agree feature by feature
    top = np.argmax(path, axis=1)
    material = path[np.arange(len(top)), top] > 0.05
    assert material.sum() > 100
    assert np.mean(shap[np.arange(len(top)), top][material] > 0) > 0.9
    for j in range(path.shape[1]):
        if path[:, j].std() > 1e-3:
            assert np.corrcoef(path[:, j], shap[:, j])[0, 1] > 0.8


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        Ranker().predict(np.zeros((1, 3), np.float32))
    x, y, _ = data()
    with pytest.raises(DataError, match="at least 2"):
        Ranker().fit(x[:30], y[:30], np.array([30]), [f"f{i}" for i in range(6)])


def test_sample_negatives_keeps_every_positive_and_at_most_keep_negatives_per_query() -> None:
    rng = np.random.default_rng(3)
    groups = np.array([5, 200, 40, 1, 120])
    labels = rng.choice([0, 0, 0, 0, 1, 4], size=groups.sum()).astype(np.int32)
    labels[5 + 3] = 0
    kept = sample_negatives(labels, groups, 30, seed=1)
    query = np.repeat(np.arange(len(groups)), groups)
    assert kept[labels > 0].all()
    negatives_kept = np.bincount(query[kept & (labels == 0)], minlength=len(groups))
    negatives = np.bincount(query[labels == 0], minlength=len(groups))
    assert (negatives_kept == np.minimum(negatives, 30)).all()
    assert (kept == sample_negatives(labels, groups, 30, seed=1)).all()
    assert not (kept == sample_negatives(labels, groups, 30, seed=2)).all()
    assert sample_negatives(labels, groups, None, seed=1).all()
