"""Reasons: each source words its own, strongest first; feature phrases only where they apply."""

from __future__ import annotations

import numpy as np

from recsys.explain import MIN_CONTRIBUTION, feature_reasons, source_reasons
from recsys.features import FeatureSet
from recsys.pool import SourceResult, merge
from tests.world import World


def test_source_reasons_follow_the_best_rank_and_name_the_via_item(world: World) -> None:
    rec = world.hybrid()
    q = world.query(world.context("u1", cart=("k2",)))
    k1 = world.ids("k1")
    pool = merge({"popular": SourceResult(world.ids("k0", "k1"), np.ones(2, np.float32)),
                  "copurchase": SourceResult(k1, np.ones(1, np.float32), world.ids("k2")),
                  "repeat": SourceResult(k1, np.ones(1, np.float32))},
                 tuple(rec.sources), 10)
    row = int(np.flatnonzero(pool.ids == k1[0])[0])
    # k1 is rank 1 in copurchase and repeat, rank 2 in popular
    assert source_reasons(pool, row, q, rec.sources) == [
        "bought together with 'wooden spoon' (k2) (in your cart)",
        "you bought it before", "popular with shoppers"]


def test_feature_reasons_skip_what_does_not_apply(world: World) -> None:
    features = FeatureSet(("cf",), world.parts)
    col = features.column
    contrib = np.zeros(len(features.names))
    values = np.full(len(features.names), np.nan)
    contrib[col["cat_affinity"]], values[col["cat_affinity"]] = 0.5, 0.3
    contrib[col["times_bought"]], values[col["times_bought"]] = 0.9, 0.0   # 0 = never bought
    contrib[col["trend"]], values[col["trend"]] = 0.4, np.nan              # not computed
    contrib[col["price_vs_user"]], values[col["price_vs_user"]] = 0.2, 1.1
    contrib[col["is_cold"]], values[col["is_cold"]] = MIN_CONTRIBUTION / 2, 1.0   # noise
    assert feature_reasons(contrib, values, "kitchen", features) == [
        "matches your interest in kitchen", "in your usual price range"]
    assert feature_reasons(contrib, values, "kitchen", features, top=1) == [
        "matches your interest in kitchen"]
    assert feature_reasons(-contrib, values, "kitchen", features) == []
