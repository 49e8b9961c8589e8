"""The contract every first-stage model passes (after implicit's ``RecommenderBaseTestMixin``).

A model's test module is a few lines::

    class TestALS(ModelContract):
        def make_model(self) -> Model:
            return MFModel(MFConfig(factors=8, iterations=15, seed=0))

Hooks: ``make_model`` (required: an unfitted model), ``make_case`` (default: the checkerboard
of :mod:`tests.models.conftest`), ``fit_model`` (default: ``model.fit(case.data)``). Nothing
here assumes a particular model family; only :mod:`recsys.models.base` is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import DataError, NotFittedError
from recsys.models.base import Model
from tests.models.conftest import ContractCase, checkerboard


class ModelContract:
    """Mixin of contract tests; subclasses provide :meth:`make_model`."""

    def make_model(self) -> Model:
        raise NotImplementedError

    def make_case(self) -> ContractCase:
        return checkerboard()

    def fit_model(self, model: Model, case: ContractCase) -> Model:
        return model.fit(case.data)

    # built once per test class: fixtures are tiny, but a content model's fit is not free
    @pytest.fixture(scope="class")
    @classmethod
    def case(cls) -> ContractCase:
        return cls().make_case()

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, case: ContractCase) -> Model:
        contract = cls()
        return contract.fit_model(contract.make_model(), case)

    # ------------------------------------------------------------------------------ quality
    def test_known_answer(self, model: Model, case: ContractCase) -> None:
        ids, _ = model.recommend(case.userids, case.user_items, k=case.k)
        hits = [np.isin(want, row).mean() for row, want in zip(ids, case.expected, strict=True)]
        assert np.mean(hits) >= case.min_hit_rate, (
            f"hit rate {np.mean(hits):.2f} < {case.min_hit_rate}; misses for rows "
            f"{[r for r, h in enumerate(hits) if h < 1][:10]}")

    # ------------------------------------------------------------------------------- shapes
    def test_score_shape_and_dtype(self, model: Model, case: ContractCase) -> None:
        scores = model.score(case.userids[:3], case.user_items[:3])
        assert scores.shape == (3, len(case.data.items))
        assert scores.dtype == np.float32
        assert model.n_items == len(case.data.items)

    def test_batch_equals_scalar(self, model: Model, case: ContractCase) -> None:
        users, rows = case.userids[:7], case.user_items[:7]
        batch_ids, batch_scores = model.recommend(users, rows, k=5)
        assert batch_ids.shape == (7, 5) and batch_scores.shape == (7, 5)
        for r, user in enumerate(users):
            ids, scores = model.recommend(int(user), rows[r], k=5)
            assert ids.shape == (5,)
            np.testing.assert_array_equal(ids, batch_ids[r])
            np.testing.assert_allclose(scores, batch_scores[r], rtol=1e-5, atol=1e-6)

    def test_k_larger_than_catalog_pads(self, model: Model, case: ContractCase) -> None:
        n_items, extra = len(case.data.items), 5
        row = case.user_items[[0]]
        ids, scores = model.recommend(int(case.userids[0]), row, k=n_items + extra)
        assert ids.shape == (n_items + extra,) and scores.shape == (n_items + extra,)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        valid = ids >= 0
        assert (ids[-extra:] == -1).all()
        assert np.isneginf(scores[~valid]).all() and np.isfinite(scores[valid]).all()
        assert len(np.unique(ids[valid])) == valid.sum()
        assert not np.isin(ids[valid], row.indices).any(), "already-seen items recommended"
        assert (np.diff(scores[valid]) <= 0).all(), "scores not sorted best first"

    def test_filter_items(self, model: Model, case: ContractCase) -> None:
        user, row = int(case.userids[0]), case.user_items[[0]]
        first, _ = model.recommend(user, row, k=3)
        ids, _ = model.recommend(user, row, k=3, filter_items=first[:1])
        assert first[0] not in ids

    def test_similar_items(self, model: Model, case: ContractCase) -> None:
        n_items = len(case.data.items)
        ids, scores = model.similar_items(0, k=n_items + 3)
        assert ids.shape == scores.shape == (n_items + 3,)
        assert 0 not in ids
        valid = ids >= 0
        assert (ids[-4:] == -1).all()  # the item itself + 3 beyond the catalog
        assert (np.diff(scores[valid]) <= 0).all()

    # ------------------------------------------------------------------------ reproducible
    def test_save_load_round_trip(self, model: Model, case: ContractCase,
                                  tmp_path: Path) -> None:
        names = model.save(tmp_path)
        assert names and all((tmp_path / name).is_file() for name in names)
        loaded = type(model).load(tmp_path)
        np.testing.assert_array_equal(model.score(case.userids, case.user_items),
                                      loaded.score(case.userids, case.user_items))
        for a, b in zip(model.similar_items(1, k=5), loaded.similar_items(1, k=5), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_same_seed_same_results(self, case: ContractCase) -> None:
        first = self.make_model()
        assert self.fit_model(first, case) is first, "fit must return self"
        second = self.fit_model(self.make_model(), case)
        np.testing.assert_array_equal(first.score(case.userids, case.user_items),
                                      second.score(case.userids, case.user_items))

    # ------------------------------------------------------------------------------ errors
    def test_unfitted_raises(self, case: ContractCase) -> None:
        model = self.make_model()
        with pytest.raises(NotFittedError):
            model.recommend(int(case.userids[0]), case.user_items[[0]], k=3)
        with pytest.raises(NotFittedError):
            model.score(case.userids[:1], case.user_items[:1])
        with pytest.raises(NotFittedError):
            model.similar_items(0)

    def test_unfitted_save_raises(self, case: ContractCase, tmp_path: Path) -> None:
        with pytest.raises(NotFittedError):
            self.make_model().save(tmp_path)

    def test_user_items_row_mismatch(self, model: Model, case: ContractCase) -> None:
        with pytest.raises(DataError, match="1 row for every user"):
            model.recommend(case.userids[:2], case.user_items[:3], k=3)
        with pytest.raises(DataError):
            model.recommend(int(case.userids[0]), sp.csr_matrix(case.user_items[:2]), k=3)

    def test_bad_k(self, model: Model, case: ContractCase) -> None:
        with pytest.raises(DataError):
            model.recommend(int(case.userids[0]), case.user_items[[0]], k=0)
