"""Readable reasons for each recommended item: from the sources that proposed it and from the
ranker features that pushed it up most (LightGBM ``pred_contrib``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from recsys.candidates import SOURCES, CandidatePool
from recsys.features import FEATURES, Context

Namer = Callable[[int], str]


def _where(item: int, ctx: Context) -> str:
    if item in ctx.cart:
        return "in your cart"
    if item in ctx.current:
        return "you are looking at"
    if item in ctx.views:
        return "you viewed"
    return "you bought"


def source_reasons(pool: CandidatePool, row: int, ctx: Context, name: Namer,
                   category: str, times_bought: int) -> list[str]:
    """Reasons from the sources that proposed candidate ``row``, strongest (best rank) first."""
    # plain Python on one row of 9 sources: numpy calls cost more than the work here
    ranks = pool.ranks[row].tolist()
    vias = pool.via[row].tolist()
    out: list[str] = []
    for j in sorted((j for j, r in enumerate(ranks) if r > 0), key=ranks.__getitem__):
        source, via = SOURCES[j], vias[j]
        if source in ("copurchase", "i2i_cf", "i2i_content") and via >= 0:
            verb = "bought together with" if source == "copurchase" else "similar to"
            out.append(f"{verb} {name(via)} ({_where(via, ctx)})")
        elif source == "cf":
            out.append("shoppers with tastes like yours bought it")
        elif source == "content":
            out.append("similar to items you interacted with")
        elif source == "buyagain":
            out.append(f"you bought it before ({times_bought}x)")
        elif source == "popular":
            out.append("popular with shoppers")
        elif source == "trending":
            out.append("trending this week")
        elif source == "popular_cat":
            out.append(f"popular in {category}")
    return list(dict.fromkeys(out))


# a reason must move the score visibly, not by rounding noise
MIN_CONTRIBUTION = 0.01
ZERO_MEANS_ABSENT = frozenset({"in_session_views", "times_bought", "is_cold", "cat_affinity",
                               "brand_affinity"})
FEATURE_PHRASES: dict[str, str] = {
    "cat_affinity": "matches your interest in {category}",
    "brand_affinity": "a brand you like",
    "price_vs_user": "in your usual price range",
    "sim_cart_max": "goes with what is in your cart",
    "sim_views_max": "close to what you just viewed",
    "in_session_views": "you looked at it in this session",
    "trend": "trending this week",
    "pop_7d": "popular this week",
    "times_bought": "you buy it regularly",
    "is_cold": "new in the shop",
    "hour": "fits what shoppers buy at this time of day",
    "device": "popular on your device",
}


def feature_reasons(contrib: np.ndarray, values: np.ndarray, category: str,
                    top: int = 2, order: np.ndarray | None = None) -> list[str]:
    """Phrases for the ``top`` features with the largest positive contribution, skipping
    features that do not apply to this request (NaN, or a 0 flag/count). ``order``: the
    feature indices by contribution, largest first, when the caller sorted many rows at once."""
    out: list[str] = []
    c, v = contrib.tolist(), values.tolist()
    if order is None:
        order = np.argsort(-contrib, kind="stable")
    for j in order[: top * 4].tolist():
        if c[j] <= MIN_CONTRIBUTION:
            break
        if not math.isfinite(v[j]) or (FEATURES[j] in ZERO_MEANS_ABSENT and v[j] == 0):
            continue
        phrase = FEATURE_PHRASES.get(FEATURES[j])
        if phrase:
            out.append(phrase.format(category=category))
        if len(out) == top:
            break
    return out
