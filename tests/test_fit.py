"""recsys.fit: the hybrid fitted in several processes is the one fitted in one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.recommender import HybridRecommender, Request
from tests.conftest import tiny_pipeline_config


def test_the_fit_does_not_depend_on_workers(tiny_shop: Path) -> None:
    """workers=2 forks the content model beside ALS and the sources, and asks the rankers'
    queries and fits the surfaces' rankers in two processes; every part must come out equal."""
    alone = HybridRecommender.fit(tiny_shop, tiny_pipeline_config(), workers=1)
    forked = HybridRecommender.fit(tiny_shop, tiny_pipeline_config(), workers=2)
    assert alone.report is not None and forked.report is not None
    for name in ("cf", "content"):
        np.testing.assert_array_equal(alone.parts.spaces[name].model.item_vectors(),
                                      forked.parts.spaces[name].model.item_vectors())
    assert set(alone.rankers) == set(forked.rankers) == {"for_you", "buy_again", "discover"}
    for surface, ranker in alone.rankers.items():
        assert ranker.booster_ is not None
        other = forked.rankers[surface].booster_
        assert other is not None
        assert ranker.booster_.model_to_string() == other.model_to_string(), surface
    assert alone.report.rankers == forked.report.rankers
    for user in alone.sample_users(20):
        ask = Request(user_id=user)
        assert [r.item_id for r in alone.recommend(ask).items] == \
            [r.item_id for r in forked.recommend(ask).items]
