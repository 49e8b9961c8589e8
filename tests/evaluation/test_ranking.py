from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.lists import check_recs
from evaluation.ranking import judge, mean_metrics, ndcg, ranking_metrics, relevant_sets
from recsys import metrics as lib_metrics
from recsys.errors import DataError

# k = 3. 1/log2(2) = 1, 1/log2(3) = 0.630930, 1/log2(4) = 0.5
RECS = np.array([[5, 2, 9],     # u0: hits at ranks 2, 3 (relevant {2, 9})
                 [1, -1, 3],    # u1: hit at rank 3 (relevant {3, 7}); slot 2 empty
                 [4, 6, 8],     # u2: no relevant items -> NaN everywhere
                 [7, 8, -1]])   # u3: hit at rank 1 (5 relevant items > k)
RELEVANT = [[2, 9], [3, 7], [], [0, 1, 2, 3, 7]]


def test_hand_computed_binary() -> None:
    m = ranking_metrics(RECS, RELEVANT, k=3)
    nan = np.nan
    # precision = hits / k
    np.testing.assert_allclose(m["precision@3"], [2 / 3, 1 / 3, nan, 1 / 3])
    # recall = hits / |relevant|: u3 1/5
    np.testing.assert_allclose(m["recall@3"], [1.0, 0.5, nan, 0.2])
    # AP@3: u0 (1/2 + 2/3) / 2; u1 (1/3) / 2; u3 (1/1) / min(5, 3)
    np.testing.assert_allclose(m["map@3"], [7 / 12, 1 / 6, nan, 1 / 3])
    np.testing.assert_allclose(m["mrr@3"], [0.5, 1 / 3, nan, 1.0])
    np.testing.assert_allclose(m["hit_rate@3"], [1.0, 1.0, nan, 1.0])
    # NDCG: u0 (0.630930 + 0.5) / (1 + 0.630930) = 0.693426
    #       u1 0.5 / 1.630930 = 0.306574;  u3 1 / (1 + 0.630930 + 0.5) = 0.469279
    np.testing.assert_allclose(m["ndcg@3"], [0.693426, 0.306574, nan, 0.469279], atol=1e-6)
    means = mean_metrics(m)  # over the 3 users with relevant items
    assert means["precision@3"] == pytest.approx(4 / 9)
    assert means["recall@3"] == pytest.approx(1.7 / 3)
    assert means["map@3"] == pytest.approx((7 / 12 + 1 / 6 + 1 / 3) / 3)


def test_hand_computed_graded_and_capped() -> None:
    gains = [[1, 2], [3, 1], [], [1, 1, 1, 1, 1]]
    m = ranking_metrics(RECS, RELEVANT, k=3, gains=gains)
    # u0 linear: DCG = 1 * 0.630930 + 2 * 0.5 = 1.630930; ideal = 2 + 1 * 0.630930 = 2.630930
    # u1 linear: DCG = 3 * 0.5 = 1.5; ideal = 3 + 0.630930 = 3.630930 -> 0.413117
    assert m["ndcg@3"][0] == pytest.approx(1.630930 / 2.630930, abs=1e-6)
    assert m["ndcg@3"][1] == pytest.approx(1.5 / 3.630930, abs=1e-6)
    np.testing.assert_allclose(m["ndcg_binary@3"], ranking_metrics(RECS, RELEVANT, 3)["ndcg@3"])
    # u0 exponential: gains 2^1-1 = 1, 2^2-1 = 3: DCG = 0.630930 + 1.5; ideal = 3 + 0.630930
    j = judge(RECS, RELEVANT, 3, gains)
    assert ndcg(j, "exponential")[0] == pytest.approx(2.130930 / 3.630930, abs=1e-6)
    # capped recall divides u3's single hit by min(5, 3)
    from evaluation.ranking import recall
    np.testing.assert_allclose(recall(j, capped=True), [1.0, 0.5, np.nan, 1 / 3])


def test_padding_short_lists_and_zero_gain() -> None:
    # k larger than the lists: padded with -1, precision still divides by k
    m = ranking_metrics([[1, 2]], [[2]], k=4)
    assert m["precision@4"][0] == 0.25 and m["mrr@4"][0] == 0.5
    # a gain of 0 means "not relevant"; a repeated relevant item keeps its largest gain
    m = ranking_metrics([[1, 2]], [[1, 2, 2]], k=2, gains=[[0, 1, 3]])
    assert m["precision@2"][0] == 0.5 and m["ndcg@2"][0] == pytest.approx(3 * 0.630930 / 3,
                                                                         abs=1e-6)


def test_validation_errors() -> None:
    with pytest.raises(DataError, match="repeats item 4"):
        check_recs([[4, 1, 4]], k=3)
    with pytest.raises(DataError, match="2-D"):
        check_recs([1, 2, 3], k=2)
    with pytest.raises(DataError, match="ids must be >= 0"):
        check_recs([[1, -2]], k=2)
    with pytest.raises(DataError, match="one \\(possibly empty\\) set per user"):
        ranking_metrics([[1, 2]], [[1], [2]], k=2)
    with pytest.raises(DataError, match="positive int"):
        ranking_metrics([[1, 2]], [[1]], k=0)


def test_relevant_sets_from_frame() -> None:
    frame = pd.DataFrame({"user_id": [2, 0, 2], "item_id": [5, 7, 6], "n": [1.0, 2.0, 3.0]})
    items, gains = relevant_sets(frame, n_users=3, gain_col="n")
    assert [i.tolist() for i in items] == [[7], [], [5, 6]]
    assert gains is not None and gains[2].tolist() == [1.0, 3.0]


def random_case(seed: int, n_users: int = 300, n_items: int = 60, width: int = 12,
                ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    recs = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)])
    lengths = rng.integers(1, width + 1, n_users)  # every list keeps >= 1 item
    recs[np.arange(width)[None, :] >= lengths[:, None]] = -1
    relevant = [rng.choice(n_items, rng.integers(0, 9), replace=False) for _ in range(n_users)]
    gains = [rng.integers(1, 4, len(r)).astype(float) for r in relevant]
    return recs, relevant, gains


@pytest.mark.parametrize("k", [5, 10])
def test_against_trec_eval(k: int) -> None:
    """pytrec_eval (trec_eval's C code) as the independent reference on random inputs."""
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="peer library pytrec-eval-terrier")
    recs, relevant, gains = random_case(seed=k)
    m = ranking_metrics(recs, relevant, k, gains=gains)
    qrels = {str(u): {str(i): int(g) for i, g in zip(r, gs, strict=True)}
             for u, (r, gs) in enumerate(zip(relevant, gains, strict=True)) if len(r)}
    def run(width: int) -> dict[str, dict[str, float]]:  # distinct scores: rank order exact
        return {str(u): {str(i): float(100 - rank) for rank, i in enumerate(row[:width]) if i >= 0}
                for u, row in enumerate(recs)}
    measures = {f"P_{k}", f"recall_{k}", f"ndcg_cut_{k}", f"map_cut_{k}", f"success_{k}",
                "recip_rank", "num_rel"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run(recs.shape[1]))
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run(k))
    users = sorted(int(u) for u in full)
    assert len(users) > 200
    ref = {name: np.array([full[str(u)][name] for u in users])
           for name in measures - {"recip_rank"}}
    n_rel = ref["num_rel"]
    np.testing.assert_allclose(m[f"precision@{k}"][users], ref[f"P_{k}"], atol=1e-9)
    np.testing.assert_allclose(m[f"recall@{k}"][users], ref[f"recall_{k}"], atol=1e-9)
    np.testing.assert_allclose(m[f"ndcg@{k}"][users], ref[f"ndcg_cut_{k}"], atol=1e-9)
    np.testing.assert_allclose(m[f"hit_rate@{k}"][users], ref[f"success_{k}"], atol=1e-9)
    # trec_eval's map_cut divides by |relevant|; ours by min(|relevant|, k)
    np.testing.assert_allclose(m[f"map@{k}"][users],
                               ref[f"map_cut_{k}"] * n_rel / np.minimum(n_rel, k), atol=1e-9)
    # trec_eval's recip_rank has no cutoff: give it the run truncated at k
    rr = np.array([cut[str(u)]["recip_rank"] for u in users])
    np.testing.assert_allclose(m[f"mrr@{k}"][users], rr, atol=1e-9)


def test_agrees_with_in_library_metrics() -> None:
    recs, relevant, _ = random_case(seed=3)
    rel = [np.asarray(r) for r in relevant]
    j = judge(recs, rel, 10)
    from evaluation.ranking import recall
    assert mean_metrics({"r": recall(j, capped=True)})["r"] == pytest.approx(
        lib_metrics.recall_at_k(recs, rel, 10))
    assert mean_metrics({"n": ndcg(j)})["n"] == pytest.approx(lib_metrics.ndcg_at_k(recs, rel, 10))
