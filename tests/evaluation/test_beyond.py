from __future__ import annotations

import numpy as np
import pytest

from evaluation.beyond import (
    catalog_coverage,
    exposure,
    gini_exposure,
    ild_category,
    ild_embedding,
    mean_popularity,
    novelty,
    popularity_share,
    serendipity,
)
from recsys.errors import DataError


def test_ild_category() -> None:
    cats = ["a", "a", "b", "b", "c", None]  # None is a category of its own
    recs = [[0, 1, 2],    # pairs (0,1) same, (0,2) and (1,2) differ -> 2/3
            [0, 2, 4],    # all three pairs differ -> 1
            [1, -1, -1],  # one item: no pair -> NaN
            [5, 4, -1]]   # None vs c -> 1
    np.testing.assert_allclose(ild_category(recs, cats, 3), [2 / 3, 1.0, np.nan, 1.0])


def test_ild_embedding() -> None:
    emb = [[1, 0], [0, 1], [1, 1], [-1, 0], [0, 0]]
    # u0: orthogonal pair -> 1 - 0 = 1
    # u1: (0,3) cos -1 -> 2; (0,2) cos 0.7071 -> 0.2929; (3,2) cos -0.7071 -> 1.7071; mean 4/3
    out = ild_embedding([[0, 1, -1], [0, 3, 2]], emb, 3)
    np.testing.assert_allclose(out, [1.0, 4 / 3])
    with pytest.raises(DataError, match="zero embedding"):
        ild_embedding([[0, 4]], emb, 2)


def test_ild_embedding_matches_pairwise_loop() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 8))
    recs = np.stack([rng.permutation(30)[:6] for _ in range(50)])
    out = ild_embedding(recs, emb, 6)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for u in (0, 17, 49):
        sims = [unit[a] @ unit[b] for i, a in enumerate(recs[u]) for b in recs[u][i + 1:]]
        assert out[u] == pytest.approx(1 - np.mean(sims))


def test_coverage_and_gini() -> None:
    recs = [[0, 1], [1, 2], [1, -1]]
    # exposure over 5 items: [1, 3, 1, 0, 0]; coverage 3 / 5
    assert exposure(recs, 5, 2).tolist() == [1, 3, 1, 0, 0]
    assert catalog_coverage(recs, 5, 2) == pytest.approx(0.6)
    # sorted x = [0, 0, 1, 1, 3], weights 2i - n - 1 = [-4, -2, 0, 2, 4]: (2 + 12) / (5 * 5)
    assert gini_exposure(recs, 5, 2) == pytest.approx(0.56)
    assert gini_exposure([[0, 1], [2, 3]], 4, 2) == pytest.approx(0.0)      # equal exposure
    assert gini_exposure([[0], [0]], 4, 1) == pytest.approx(3 / 4)          # (n - 1) / n
    with pytest.raises(DataError, match="not a known item"):
        catalog_coverage([[7]], 5, 1)


def test_novelty_and_popularity() -> None:
    users, items = [0, 0, 1, 2, 3], [0, 1, 0, 0, 2]
    # 4 users: item 0 seen by 3 -> 3/4; items 1, 2 by 1 -> 1/4; item 3 unseen -> 0
    share = popularity_share(items, 4, users)
    np.testing.assert_allclose(share, [0.75, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(popularity_share(items, 4), [0.6, 0.2, 0.2, 0.0])  # 5 events
    # u0: (-log2 0.75 + -log2 0.25) / 2 = (0.415037 + 2) / 2; u1: unseen -> rarest seen, 2 bits
    np.testing.assert_allclose(novelty([[0, 1], [3, -1]], share, 2), [1.2075187, 2.0])
    np.testing.assert_allclose(mean_popularity([[0, 1], [3, -1]], [3, 1, 1, 0], 2), [2.0, 0.0])


def test_serendipity() -> None:
    # relevant {1, 2}; the baseline also shows 1 -> only item 2 is serendipitous: 1/3
    out = serendipity([[0, 1, 2], [0, 1, 2]], [[1, 2], []], [[1, 5, 6], [0, 1, 2]], 3)
    np.testing.assert_allclose(out, [1 / 3, np.nan])
    # identical to the baseline -> nothing serendipitous
    assert serendipity([[1, 2]], [[1, 2]], [[2, 1]], 2)[0] == 0.0
