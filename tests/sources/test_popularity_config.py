"""One popularity: the popular, trending and popular-in-category sources are built from the one
popularity model, so every ``[popularity]`` key changes what is served (each flipped here)."""

from __future__ import annotations

import pytest

from recsys.context import Request
from recsys.data.interactions import InteractionConfig
from recsys.models.popularity import PopularityConfig
from recsys.rules import RulesConfig
from tests.world import NOW, build_world


def served(popularity: PopularityConfig) -> dict[str, list[str]]:
    """What each popularity-built pipeline serves, for an anonymous and a known shopper."""
    world = build_world(popularity)
    rec = world.hybrid(world.hybrid().config.model_copy(
        update={"rules": RulesConfig(exclude_purchased=False)}))
    out = {}
    for pipeline in ("popularity", "trending", "popular_cat", "seasonal"):
        for user in (None, "u1"):
            response = rec.variant(pipeline).recommend(Request(user_id=user, k=4, timestamp=NOW))
            out[f"{pipeline}/{user}"] = [i.item_id for i in response.items]
    return out


BASE = PopularityConfig()


CHANGES = [
    {"mode": "recent"},
    {"mode": "category"},
    {"half_life_days": 0.5},
    {"trend_days": 30.0},
    {"season_days": 360.0},      # reaches back into the 30 days the tiny shop spans
    {"top_categories": 1},
    {"interactions": {"weights": {"view": 1.0, "click": 2.0, "add_to_cart": 4.0,
                                  "purchase": 0.5}}},
    {"interactions": {"use_quantity": False}},
]


def test_every_key_is_flipped() -> None:
    keys = {next(iter(c)) for c in CHANGES}
    assert keys == set(PopularityConfig.model_fields)
    flipped = {k for c in CHANGES for k in c.get("interactions", {})}
    # interactions.half_life_days is refused: decay is popularity.half_life_days
    assert flipped == set(InteractionConfig.model_fields) - {"half_life_days"}


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: next(iter(c)) + (
    "." + next(iter(c["interactions"])) if "interactions" in c else ""))
def test_each_popularity_key_changes_what_is_served(change: dict) -> None:
    base = BASE.model_dump()
    if change.get("mode") is None and "half_life_days" in change:
        base["mode"] = "recent"          # the half-life is what 'recent' ranks by
    before = served(PopularityConfig.model_validate(base))
    after = served(PopularityConfig.model_validate({**base, **change}))
    assert before != after, change
