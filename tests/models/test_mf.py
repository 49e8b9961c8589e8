"""Matrix factorisation: the shared contract for ALS and BPR, plus early stopping and fold-in."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys.configfile import parse_config
from recsys.errors import ConfigError, DataError
from recsys.models.base import Model
from recsys.models.mf import MFConfig, MFModel
from tests.models.conftest import ContractCase, checkerboard
from tests.models.contract import ModelContract

# the checkerboard has rank 2: few factors and firm regularization keep ALS from overfitting it
ALS = MFConfig(factors=4, iterations=15, regularization=1.0, seed=0)


class TestALS(ModelContract):
    def make_model(self) -> Model:
        return MFModel(ALS)


class TestBPR(ModelContract):
    def make_model(self) -> Model:
        # Hogwild SGD is only bit-reproducible on one thread
        config = MFConfig(algorithm="bpr", factors=8, iterations=100, learning_rate=0.05, seed=0)
        return MFModel(config, num_threads=1)


@pytest.fixture(scope="module")
def board() -> ContractCase:
    return checkerboard()


@pytest.fixture(scope="module")
def als(board: ContractCase) -> MFModel:
    return MFModel(ALS).fit(board.data)


def test_factors_are_faiss_ready(als: MFModel, board: ContractCase) -> None:
    for factors, rows in ((als.user_factors_, 50), (als.item_factors_, 50)):
        assert factors is not None and factors.shape == (rows, ALS.factors)
        assert factors.dtype == np.float32 and factors.flags.c_contiguous
    scores = als.score(board.userids, board.user_items)
    np.testing.assert_allclose(scores, als.user_factors_ @ als.item_factors_.T, rtol=1e-6)


def test_early_stopping_restores_best(board: ContractCase) -> None:
    config = MFConfig(factors=8, iterations=200, eval_every=1, patience=1, seed=0)
    model = MFModel(config).fit(board.data, board.valid)
    ran = model.history_[-1]["iteration"]
    assert ran < config.iterations and len(model.history_) == ran
    best = model.best_iteration_
    assert best is not None and best < ran
    entry = next(h for h in model.history_ if h["iteration"] == best)
    assert model.valid_metrics_["ndcg@10"] == entry["valid_ndcg@10"]
    assert set(entry) >= {"iteration", "train_loss", "valid_ndcg@10", "valid_recall@20",
                          "seconds"}
    assert entry["train_loss"] > 0
    assert board.valid is not None
    assert model.evaluate(board.valid) == model.valid_metrics_
    # chunked training warm-starts, so the restored state is exactly `best` plain iterations
    plain = MFModel(config.model_copy(update={"iterations": best})).fit(board.data)
    np.testing.assert_array_equal(model.item_factors_, plain.item_factors_)
    np.testing.assert_array_equal(model.user_factors_, plain.user_factors_)


def test_history_survives_save_load(board: ContractCase, tmp_path) -> None:
    config = MFConfig(factors=8, iterations=6, eval_every=3, patience=5, seed=0)
    model = MFModel(config).fit(board.data, board.valid)
    assert [h["iteration"] for h in model.history_] == [3, 6]
    model.save(tmp_path)
    loaded = MFModel.load(tmp_path)
    assert loaded.history_ == model.history_ and loaded.best_iteration_ == model.best_iteration_
    assert loaded.valid_metrics_ == model.valid_metrics_ and loaded.config == config


def test_bpr_early_stopping_records_auc(board: ContractCase) -> None:
    config = MFConfig(algorithm="bpr", factors=4, iterations=20, eval_every=10, patience=5,
                      learning_rate=0.05, seed=0)
    model = MFModel(config, num_threads=1).fit(board.data, board.valid)
    assert [h["iteration"] for h in model.history_] == [10, 20]
    assert all(0.0 <= h["train_auc"] <= 1.0 and h["train_loss"] is None for h in model.history_)
    assert model.user_factors_ is not None and model.user_factors_.shape == (50, 5)  # + bias
    fold = model.fold_in(board.user_items[[0]])
    assert fold.shape == (5,) and fold[-1] == 1.0


def test_fold_in_matches_implicit_recalculate_user(als: MFModel, board: ContractCase) -> None:
    reference = AlternatingLeastSquares(factors=ALS.factors, regularization=ALS.regularization,
                                        alpha=1.0, num_threads=1)
    reference.item_factors = als.item_factors_.copy()
    reference.user_factors = als.user_factors_.copy()
    for user in (0, 7, 31):
        row = board.user_items[[user]]
        expected = reference.recalculate_user(0, als.confidence(row))
        np.testing.assert_allclose(als.fold_in(row), expected, rtol=1e-3, atol=1e-4)


def test_unknown_user_fold_in_recommends_rest_of_pattern(als: MFModel,
                                                         board: ContractCase) -> None:
    n = len(board.data.items)
    given = np.arange(0, n, 4)  # half of the even pattern
    rest = np.arange(2, n, 4)
    row = sp.csr_matrix((np.full(len(given), 8.0), (np.zeros(len(given)), given)),
                        shape=(1, n), dtype=np.float32)
    ids, _ = als.recommend(-1, row, k=len(rest))
    assert set(ids.tolist()) == set(rest.tolist())
    # -1 in score() is the same fold-in, and may be mixed with known users in a batch
    rows = sp.vstack([row, board.user_items[[3]]]).tocsr()
    scores = als.score(np.array([-1, 3]), rows)
    np.testing.assert_allclose(scores[0], als.fold_in(row) @ als.item_factors_.T, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(scores[1], als.user_factors_[3] @ als.item_factors_.T, rtol=1e-5,
                               atol=1e-6)


def test_empty_history_folds_in_to_zero(als: MFModel) -> None:
    empty = sp.csr_matrix((1, als.n_items), dtype=np.float32)
    assert not als.fold_in(empty).any()


def test_fold_in_is_fast(board: ContractCase) -> None:
    model = MFModel(MFConfig(factors=64, iterations=2, regularization=0.1)).fit(board.data)
    row = board.user_items[[0]]
    times = []
    with threadpool_limits(limits=1, user_api="blas"):  # as under the "serve" thread policy
        for _ in range(100):
            start = time.perf_counter()
            model.fold_in(row)
            times.append(time.perf_counter() - start)
    assert np.median(times) < 1e-3


def test_recalculate_known_users(als: MFModel, board: ContractCase) -> None:
    vectors = als.user_vectors(board.userids[:2], board.user_items[:2], recalculate=True)
    np.testing.assert_allclose(vectors[1], als.fold_in(board.user_items[[1]]), rtol=1e-6)


def test_similar_items_share_parity(als: MFModel) -> None:
    ids, _ = als.similar_items(4, k=10)
    assert (ids % 2 == 0).all()


def test_user_id_out_of_range(als: MFModel, board: ContractCase) -> None:
    with pytest.raises(DataError, match="pass -1"):
        als.score(np.array([50]), board.user_items[[0]])
    with pytest.raises(DataError, match="columns"):
        als.score(np.array([0]), sp.csr_matrix((1, 10)))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="unknown key 'factor'"):
        parse_config(MFConfig, {"factor": 8})
    with pytest.raises(ConfigError, match="metric"):
        parse_config(MFConfig, {"metric": "map@10"})
    assert MFConfig().algorithm == "als" and MFConfig().metric == "ndcg@10"
