"""ItemIndex: exact against brute force, IVF against exact, filters that never leak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from recsys import retrieval
from recsys.configfile import parse_config
from recsys.errors import BundleError, ConfigError, DataError
from recsys.retrieval import ItemIndex, RetrievalConfig, recall_at, score_recall

DIM = 32


def mixture(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items plus two query sets (tuning, held-out) from one gaussian mixture."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((int(np.sqrt(n)), DIM), dtype=np.float32)

    def draw(m: int) -> np.ndarray:
        noise = rng.standard_normal((m, DIM), dtype=np.float32)
        return np.ascontiguousarray(centers[rng.integers(0, len(centers), m)] + 0.5 * noise)

    return draw(n), draw(n_queries), draw(n_queries)


def brute_force(x: np.ndarray, q: np.ndarray, k: int,
                eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ x.T
    if eligible is not None:
        scores[:, ~eligible] = -np.inf
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, axis=1)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return mixture(20_000, 300)


@pytest.fixture(scope="module")
def ivf(data: tuple[np.ndarray, ...]) -> ItemIndex:
    items, tune, _ = data
    return ItemIndex.build(items, RetrievalConfig(exact_max_items=1_000), tune)


@pytest.fixture(scope="module")
def exact(data: tuple[np.ndarray, ...]) -> ItemIndex:
    return ItemIndex.build(data[0], RetrievalConfig())


def check_filtered(ids: np.ndarray, allowed: np.ndarray | None,
                   exclude: np.ndarray | None) -> None:
    found = ids[ids >= 0]
    if allowed is not None:
        assert allowed[found].all(), "a disallowed id was returned"
    if exclude is not None:
        assert not np.isin(found, exclude).any(), "an excluded id was returned"
    for row in ids:  # no duplicates, padding only at the end
        valid = row[row >= 0]
        assert len(np.unique(valid)) == len(valid)
        assert (row[len(valid):] == -1).all()


def test_exact_index_equals_brute_force(exact: ItemIndex, data: tuple[np.ndarray, ...]) -> None:
    items, _, queries = data
    assert exact.build_info_["kind"] == "exact"
    ids, scores = exact.search(queries[:20], 50)
    ref_ids, ref_scores = brute_force(items, queries[:20], 50)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-4)
    one_ids, one_scores = exact.search(queries[3], 50)  # a single vector gives 1-D results
    np.testing.assert_array_equal(one_ids, ids[3])
    np.testing.assert_allclose(one_scores, scores[3], rtol=1e-6)


def test_ivf_recall_reaches_target_and_is_recorded(ivf: ItemIndex,
                                                   data: tuple[np.ndarray, ...]) -> None:
    items, tune, held_out = data
    info = ivf.build_info_
    config = ivf.config
    assert info["kind"] == "ivf" and info["n_items"] == 20_000 and info["dim"] == DIM
    assert info["nlist"] == config.nlist_for(20_000) and info["queries"] == len(tune)
    assert info["nprobe"] in config.nprobe_grid
    assert info["measured_recall"] >= config.target_recall
    # nprobe is the smallest in the grid that reaches the target
    previous = [p for p in config.nprobe_grid if p < info["nprobe"]]
    truth_scores, _ = faiss.knn(tune, items, config.candidate_depth,
                                metric=faiss.METRIC_INNER_PRODUCT)
    if previous:
        probe = faiss.SearchParametersIVF()
        probe.nprobe = previous[-1]
        got_scores, _ = ivf.raw_search(tune, config.candidate_depth, params=probe)
        assert score_recall(got_scores, truth_scores) < config.target_recall
    # and it holds on held-out queries from the same distribution
    ids, _ = ivf.search(held_out, config.candidate_depth)
    _, truth = faiss.knn(held_out, items, config.candidate_depth,
                         metric=faiss.METRIC_INNER_PRODUCT)
    assert recall_at(ids, truth) >= config.target_recall


def exact_rows_spy(index: ItemIndex, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many query rows each call to the exact-subset path answers."""
    rows: list[int] = []
    original = index._exact_subset

    def spy(q: np.ndarray, *args: Any) -> tuple[np.ndarray, np.ndarray]:
        rows.append(len(q))
        return original(q, *args)

    monkeypatch.setattr(index, "_exact_subset", spy)
    return rows


def test_filters_hold_under_ann(ivf: ItemIndex, data: tuple[np.ndarray, ...],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    items, _, queries = data
    exact_rows = exact_rows_spy(ivf, monkeypatch)
    rng = np.random.default_rng(1)
    allowed = rng.random(len(items)) < 0.3
    exclude = rng.choice(len(items), 500, replace=False)
    q = queries[:100]
    for a, e in ((allowed, None), (None, exclude), (allowed, exclude)):
        ids, scores = ivf.search(q, 200, allowed=a, exclude=e)
        check_filtered(ids, a, e)
        assert (ids >= 0).all() and np.isfinite(scores).all()
        assert (np.diff(scores, axis=1) <= 1e-6).all()
        eligible = np.ones(len(items), dtype=bool) if a is None else a.copy()
        if e is not None:
            eligible[e] = False
        truth, _ = brute_force(items, q, 200, eligible)
        assert recall_at(ids, truth) >= 0.95
    assert exact_rows == [], "ANN answered every row; no exact fallback was needed"


def test_restrictive_filter_is_exact(ivf: ItemIndex, data: tuple[np.ndarray, ...],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    items, _, queries = data
    exact_rows = exact_rows_spy(ivf, monkeypatch)
    rng = np.random.default_rng(2)
    allowed = np.zeros(len(items), dtype=bool)
    allowed[rng.choice(len(items), len(items) // 100, replace=False)] = True  # 1% allowed
    exclude = np.flatnonzero(allowed)[::7]
    ids, scores = ivf.search(queries[:50], 100, allowed=allowed, exclude=exclude)
    assert exact_rows == [50]  # below restrictive_share: straight to the exact subset
    check_filtered(ids, allowed, exclude)
    eligible = allowed.copy()
    eligible[exclude] = False
    ref_ids, ref_scores = brute_force(items, queries[:50], 100, eligible)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_k_beyond_allowed_set_pads(kind: str, ivf: ItemIndex, exact: ItemIndex,
                                   data: tuple[np.ndarray, ...]) -> None:
    index = ivf if kind == "ivf" else exact
    items, _, queries = data
    allowed = np.zeros(len(items), dtype=bool)
    allowed[[5, 17, 900, 12_345, 19_999]] = True
    ids, scores = index.search(queries[:3], 10, allowed=allowed, exclude=np.array([17]))
    eligible = allowed & (np.arange(len(items)) != 17)
    ref_ids, ref_scores = brute_force(items, queries[:3], 4, eligible)
    np.testing.assert_array_equal(ids[:, :4], ref_ids)
    np.testing.assert_allclose(scores[:, :4], ref_scores, rtol=1e-5, atol=1e-4)
    assert (ids[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    nothing, nothing_scores = index.search(queries[0], 3, allowed=np.zeros(len(items), bool))
    assert (nothing == -1).all() and np.isneginf(nothing_scores).all()


@pytest.mark.parametrize("kind", ["exact", "ivf"])
@pytest.mark.parametrize("share", [1.0, 0.97, 0.3, 0.01])
def test_trusted_search_equals_checked_search(kind: str, share: float, ivf: ItemIndex,
                                              exact: ItemIndex,
                                              data: tuple[np.ndarray, ...]) -> None:
    # the serving hot path skips the checks, not the logic: post-filter (97%), selector (30%)
    # and exact subset (1%) answer exactly as search() does, minus the padding
    index = ivf if kind == "ivf" else exact
    items, _, queries = data
    allowed = np.random.default_rng(11).random(len(items)) < share
    for q in queries[:20]:
        ids, scores = index.search(q, 60, allowed=allowed)
        t_ids, t_scores = index.search_trusted(q, 60, allowed, int(allowed.sum()))
        real = ids >= 0
        np.testing.assert_array_equal(t_ids, ids[real])
        np.testing.assert_array_equal(t_scores, scores[real])
        assert allowed[t_ids].all()


def test_ivf_rows_short_of_k_fall_back_to_exact(data: tuple[np.ndarray, ...],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # nprobe=1 visits one list of ~40 items: every row is short of k=100, so all are exact
    items, tune, queries = data
    items = items[:5_000]
    config = RetrievalConfig(exact_max_items=0, nprobe_grid=(1,), target_recall=0.01)
    index = ItemIndex.build(items, config, tune)
    assert index.build_info_["nprobe"] == 1
    # exact scores in 3-row blocks
    monkeypatch.setattr(retrieval.index, "_MAX_BLOCK", 3 * len(items))
    ids, _ = index.search(queries[:10], 100)
    np.testing.assert_array_equal(ids, brute_force(items, queries[:10], 100)[0])
    # the same with a broad filter: the fallback scores all rows and masks the ineligible ones
    allowed = np.random.default_rng(4).random(len(items)) < 0.5
    exclude = np.arange(0, len(items), 3)
    ids, _ = index.search(queries[:10], 100, allowed=allowed, exclude=exclude)
    eligible = allowed.copy()
    eligible[exclude] = False
    np.testing.assert_array_equal(ids, brute_force(items, queries[:10], 100, eligible)[0])


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_save_load_round_trip(kind: str, ivf: ItemIndex, exact: ItemIndex, tmp_path: Path,
                              data: tuple[np.ndarray, ...]) -> None:
    index = ivf if kind == "ivf" else exact
    items, _, queries = data
    names = index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    allowed = np.random.default_rng(3).random(len(items)) < 0.5
    before = index.search(queries[:20], 100, allowed=allowed, exclude=np.arange(50))
    for loaded in (ItemIndex.load(tmp_path), ItemIndex.load(tmp_path, vectors=items)):
        assert loaded.build_info_ == index.build_info_ and loaded.config == index.config
        np.testing.assert_array_equal(loaded.vectors_, items)
        after = loaded.search(queries[:20], 100, allowed=allowed, exclude=np.arange(50))
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])


def test_load_rejects_missing_or_mismatched_files(exact: ItemIndex, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="missing"):
        ItemIndex.load(tmp_path)
    exact.save(tmp_path)
    with pytest.raises(BundleError, match=r"item_index.faiss: indexes 20000 x 32 vectors, but "
                                          r"the model has 10 x 32"):
        ItemIndex.load(tmp_path, vectors=np.zeros((10, DIM), np.float32))


def test_bad_input_names_the_value(exact: ItemIndex, data: tuple[np.ndarray, ...]) -> None:
    items, _, queries = data
    with pytest.raises(DataError, match=r"shape \(2, 31\)"):
        exact.search(queries[:2, :31], 10)
    with pytest.raises(DataError, match=r"shape \(33,\)"):
        exact.search(np.zeros(33, np.float32), 10)
    for k in (0, -3):
        with pytest.raises(DataError, match=f"k = {k}"):
            exact.search(queries[:2], k)
    with pytest.raises(DataError, match=r"shape \(19999,\)"):
        exact.search(queries[:2], 10, allowed=np.ones(19_999, dtype=bool))
    with pytest.raises(DataError, match="item id 20000"):
        exact.search(queries[:2], 10, exclude=np.array([3, 20_000]))
    with pytest.raises(DataError, match="NaN"):
        exact.search(np.full(DIM, np.nan), 10)
    with pytest.raises(DataError, match=r"query_sample has dim 31"):
        ItemIndex.build(items, RetrievalConfig(exact_max_items=0), queries[:, :31])
    with pytest.raises(DataError, match=r"vectors has shape \(32,\)"):
        ItemIndex.build(items[0])


def test_config_rejects_unknown_keys_and_bad_grid() -> None:
    with pytest.raises(ConfigError, match="unknown key 'nprob'"):
        parse_config(RetrievalConfig, {"nprob": 4})
    with pytest.raises(ConfigError, match="nprobe_grid"):
        parse_config(RetrievalConfig, {"nprobe_grid": [8, 4]})
    assert parse_config(RetrievalConfig, {"nprobe_grid": [1, 4]}).nprobe_grid == (1, 4)


def test_search_leaves_thread_settings_alone(ivf: ItemIndex,
                                            data: tuple[np.ndarray, ...]) -> None:
    before = faiss.omp_get_max_threads()
    ivf.search(data[2][:5], 10, allowed=np.ones(ivf.n_items, dtype=bool))
    assert faiss.omp_get_max_threads() == before


def test_mild_filter_is_post_filtered_and_exact_enough(ivf: ItemIndex,
                                                       data: tuple[np.ndarray, ...]) -> None:
    """A mask allowing ~95% of items (stock and already-bought rules) takes the unfiltered
    search + post-filter path: never a disallowed id, recall still at target."""
    items, _, held_out = data
    rng = np.random.default_rng(5)
    allowed = rng.random(len(items)) < 0.95
    assert allowed.mean() >= ivf.config.postfilter_share
    ids, _ = ivf.search(held_out, 200, allowed=allowed)
    assert (ids >= 0).all() and allowed[ids].all()
    scores = held_out @ items.T
    scores[:, ~allowed] = -np.inf
    truth = np.argsort(-scores, axis=1)[:, :200]
    assert recall_at(ids, truth) >= ivf.config.target_recall
