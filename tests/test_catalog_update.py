"""Catalog changes between fits, on the hand-made shop of :mod:`tests.world`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.context import Request
from recsys.errors import DataError
from recsys.rules import Filters
from tests.world import NOW, World


def ids(response) -> list[str]:  # noqa: ANN001
    return [i.item_id for i in response.items]


def test_a_new_item_is_embedded_and_recommendable_at_once(world: World) -> None:
    rec = world.hybrid()
    launched = NOW - pd.Timedelta(days=1)
    new = rec.update_catalog(pd.DataFrame({
        "item_id": ["k9"], "title": ["steel pan deluxe"], "category": ["kitchen"],
        "brand": ["acme"], "price": [11.0], "first_seen": [launched]}))
    assert len(new.items) == len(rec.items) + 1 and "k9" not in rec.items   # old one untouched
    k9 = int(new.items.to_internal(["k9"])[0])
    content = new.parts.spaces["content"]
    expected = content.model.embed_items(new.catalog.table.iloc[[k9]])      # type: ignore
    np.testing.assert_allclose(content.vectors[k9], expected[0], atol=1e-5)
    assert not new.parts.spaces["cf"].vectors[k9].any()     # no purchases: no ALS vector
    # the product page of a kitchen pan shows it; new arrivals propose it
    assert "k9" in [r.item_id for r in new.similar_items("k0", k=7)]
    arrivals = new.variant("new_arrivals").recommend(Request(k=3, timestamp=NOW))
    assert ids(arrivals) == ["k9"]
    assert "new in the shop" in arrivals.items[0].reasons
    assert "k9" in ids(new.recommend(Request(user_id="u1", k=20, timestamp=NOW)))


def test_changes_and_delisting_apply_to_every_surface(world: World) -> None:
    rec = world.hybrid()
    new = rec.update_catalog(pd.DataFrame({"item_id": ["k0", "g0", "k1"],
                                           "listed": [False, None, None],
                                           "in_stock": [None, "false", None],
                                           "price": [None, None, 99.0]}))
    for surface in ("for_you", "buy_again", "discover"):
        served = ids(new.recommend(Request(user_id="u2", k=8, surface=surface)))
        assert "k0" not in served and "g0" not in served, surface
    assert "k0" not in [r.item_id for r in new.similar_items("k1", k=7)]
    cheap = new.recommend(Request(user_id="u1", k=8, filters=Filters(price_max=50)))
    assert "k1" not in ids(cheap)
    assert "k0" in ids(rec.recommend(Request(user_id="u2", k=8)))   # the old one unchanged


def test_bad_changes_name_the_problem(world: World) -> None:
    rec = world.hybrid()
    with pytest.raises(DataError, match="item_id"):
        rec.update_catalog(pd.DataFrame({"title": ["x"]}))
    with pytest.raises(DataError, match=r"unknown column\(s\) \['colour'\]"):
        rec.update_catalog(pd.DataFrame({"item_id": ["k0"], "colour": ["red"]}))
    with pytest.raises(DataError, match="price"):
        rec.update_catalog(pd.DataFrame({"item_id": ["k0"], "price": [-3.0]}))
    with pytest.raises(DataError, match="twice"):
        rec.update_catalog(pd.DataFrame({"item_id": ["k0", "k0"], "price": [1.0, 2.0]}))
