"""Business rules applied around ranking: eligibility masks before, diversity after.

Eligibility (which items may be shown at all) is a boolean mask over the catalog, computed once
per request and handed to retrieval, so filters hold under ANN search too:

* delisted (always), out of stock, not yet launched at the request time;
* already purchased by the user, except in categories where repeat purchase is allowed;
* the request's filters: categories, price range, exclude list.

After ranking: pins (always shown at the top when eligible), boosts (score multipliers), and a
diversity re-rank (MMR over item embeddings and/or a per-category cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from recsys.configfile import StrictModel

if TYPE_CHECKING:
    from recsys.catalog import Catalog


class RulesConfig(StrictModel):
    # off: whether to re-offer what a shopper bought is learned per shopper and item (the
    # repeat features); on, a shop never re-offers, except in `repeat_categories` ("*" = all)
    exclude_purchased: bool = False
    repeat_categories: tuple[str, ...] = ()
    exclude_out_of_stock: bool = True
    pinned_items: tuple[str, ...] = ()          # external ids, shown first when eligible
    boosts: dict[str, float] = Field(default_factory=dict)   # external item id -> multiplier
    mmr_lambda: float | None = Field(None, ge=0, le=1)   # None = no MMR; 1 = pure relevance
    # MMR re-ranks the best max(k x mmr_head_factor, mmr_head_min) items: enough to find
    # diverse ones, few enough for its k x head similarity matrix to stay cheap
    mmr_head_factor: int = Field(5, ge=1)
    mmr_head_min: int = Field(50, ge=1)
    max_per_category: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Filters:
    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    exclude_items: tuple[str, ...] = ()


def eligible_mask(catalog: Catalog, config: RulesConfig, *, now: int | None,
                  purchased: np.ndarray, filters: Filters, exclude_ids: np.ndarray) -> np.ndarray:
    """True where an item may be recommended for this request."""
    mask = catalog.listed.copy()
    if config.exclude_out_of_stock:
        mask &= catalog.in_stock
    if now is not None:
        mask &= catalog.first_seen <= now
    if config.exclude_purchased and len(purchased) and "*" not in config.repeat_categories:
        repeat_ok = np.zeros(len(catalog.categories), dtype=bool)
        for name in config.repeat_categories:
            if name in catalog.category_index:
                repeat_ok[catalog.category_index[name]] = True
        bought = purchased[~repeat_ok[catalog.category_codes[purchased]]]
        mask[bought] = False
    if filters.categories:
        allowed = np.zeros(len(catalog.categories), dtype=bool)
        for name in filters.categories:
            if name in catalog.category_index:
                allowed[catalog.category_index[name]] = True
        mask &= allowed[catalog.category_codes]
    if filters.price_min is not None:
        mask &= catalog.price >= filters.price_min
    if filters.price_max is not None:
        mask &= catalog.price <= filters.price_max
    if len(exclude_ids):
        mask[exclude_ids] = False
    return mask


def mmr(candidates: np.ndarray, scores: np.ndarray, vectors: np.ndarray, k: int,
        lam: float) -> np.ndarray:
    """Maximal marginal relevance: pick k of ``candidates`` trading relevance (scores, rescaled
    to 0..1) against max cosine similarity to what is already picked. Returns positions."""
    n = len(candidates)
    if n == 0:
        return np.empty(0, np.int64)
    rel = scores - scores.min()
    rel = rel / rel.max() if rel.max() > 0 else np.ones(n)
    vecs = vectors[candidates]
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    sim = vecs @ vecs.T
    picked: list[int] = []
    max_sim = np.zeros(n)
    free = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        gain = lam * rel - (1 - lam) * max_sim
        gain[~free] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        free[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return np.asarray(picked, dtype=np.int64)


def category_cap(order: np.ndarray, category_codes: np.ndarray, cap: int, k: int) -> np.ndarray:
    """Walk ``order`` (positions into candidates, best first) keeping at most ``cap`` items per
    category; if that leaves fewer than k, fill from the skipped ones in order."""
    counts: dict[int, int] = {}
    kept, skipped = [], []
    for pos in order:
        c = int(category_codes[pos])
        if counts.get(c, 0) < cap:
            kept.append(pos)
            counts[c] = counts.get(c, 0) + 1
        else:
            skipped.append(pos)
        if len(kept) == k:
            break
    if len(kept) < k:
        kept += skipped[: k - len(kept)]
    return np.asarray(kept, dtype=np.int64)
