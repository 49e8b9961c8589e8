"""A recommendation request, in external ids as a shop sends it and in internal terms as the
sources, features and rules read it.

:class:`Request` -> (the recommender maps ids, slices the history) -> :class:`Context` -> (with
the eligibility mask) :class:`Query`, which every candidate source receives. Per-request values
several sources share (the profile, the purchases) are computed once, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.history import TYPE_CODE, UserEvents
from recsys.pool import unique_inverse
from recsys.purchases import Baskets
from recsys.rules import Filters

PURCHASE = TYPE_CODE[C.PURCHASE]


@dataclass(frozen=True)
class Request:
    """A recommendation request in external ids. ``timestamp`` None = now/unknown."""

    user_id: str | None = None
    session_id: str | None = None
    timestamp: pd.Timestamp | None = None
    device: str | None = None
    cart: tuple[str, ...] = ()
    current_item: str | None = None
    recent_views: tuple[str, ...] = ()
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    surface: str = "for_you"        # for_you | buy_again | discover


@dataclass
class Recommendation:
    item_id: str
    score: float
    rank: int
    reasons: list[str]


@dataclass
class Response:
    items: list[Recommendation]
    fallback: bool
    warnings: list[str] = field(default_factory=list)
    # with_features=True: each served item's feature row (HybridRecommender.features.names)
    # and ranking score, for drift monitoring
    features: np.ndarray | None = None
    scores: np.ndarray | None = None


@dataclass
class Context:
    """A request in internal terms."""

    now: int | None                 # epoch seconds; None = unknown (time features NaN)
    device: str | None
    cart: np.ndarray                # internal ids
    current: np.ndarray             # 0 or 1 internal id
    views: np.ndarray               # recent views, internal ids
    history: UserEvents
    user_row: int                   # the user's row in the per-user model vectors, -1 = none
    known_user: bool

    @cached_property
    def context_items(self) -> np.ndarray:
        """Cart, current item and recent views, unique (computed once per request)."""
        return np.unique(np.concatenate([self.cart, self.current, self.views]))

    @cached_property
    def purchased(self) -> np.ndarray:
        """Purchase events of the history: item ids, oldest first."""
        return self.history.items[self.history.types == PURCHASE]

    @cached_property
    def purchase_times(self) -> np.ndarray:
        return self.history.times[self.history.types == PURCHASE]

    @cached_property
    def baskets(self) -> Baskets:
        """The shopper's purchases by item and basket (repeat sources and features share it)."""
        return Baskets.of(self.purchased, self.purchase_times)

    def where(self, item: int) -> str:
        """Where a context or history item sits, for a reason: 'in your cart', ..."""
        if item in self.cart:
            return "in your cart"
        if item in self.current:
            return "you are looking at"
        if item in self.views:
            return "you viewed"
        return "you bought"


@dataclass
class Query:
    """What a candidate source sees: the context, the eligibility mask, and the profile."""

    ctx: Context
    mask: np.ndarray
    type_weights: np.ndarray        # interaction weight per event type code

    @cached_property
    def n_allowed(self) -> int:
        return int(np.count_nonzero(self.mask))

    @cached_property
    def profile(self) -> tuple[np.ndarray, np.ndarray]:
        """History + context as (unique items, summed weights): views, the current item (as a
        click) and cart items (as add-to-carts) count like the events they are."""
        ctx, w = self.ctx, self.type_weights
        items = np.concatenate([ctx.history.items, ctx.views, ctx.current, ctx.cart])
        if len(items) == 0:
            return items.astype(np.int64), np.empty(0, np.float32)
        weights = np.concatenate([w[ctx.history.types],
                                  np.full(len(ctx.views), w[TYPE_CODE[C.VIEW]]),
                                  np.full(len(ctx.current), w[TYPE_CODE[C.CLICK]]),
                                  np.full(len(ctx.cart), w[TYPE_CODE[C.ADD_TO_CART]])])
        uniq, inv = unique_inverse(items)
        return uniq, np.bincount(inv, weights, minlength=len(uniq)).astype(np.float32)
