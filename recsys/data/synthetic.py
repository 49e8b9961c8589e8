"""The built-in synthetic shop: a catalog, shoppers with hidden tastes, and a browsing funnel.

Models need data with something to learn, and the funnel metrics need a funnel, so the shop is
generated from a ground truth (:class:`~recsys.data.synthetic_truth.ShopTruth`, saved beside the
data): Zipf-popular categories and brands, log-normal prices, titles and descriptions drawn from
category and brand vocabularies (content signal), users with sparse category tastes, brand and
style preferences and price sensitivity (collaborative signal), items launched during the period
(cold start), stock-outs, replenishment of consumables, and sessions shaped by weekday, hour and
device. Views are sampled from each user's utility softmax; clicks, carts and purchases are
Bernoulli draws from the same truth a simulator will query.

Everything is vectorised: sessions are arrays; each user gets a top-N list of candidate items
(scored in chunks of users, only in their favourite categories, so memory stays bounded) and
view slots are inverse-CDF draws from it, redrawn when the item is not launched yet; the funnel
is three vectors of coin flips. Events ~ ``users * days * sessions_per_user_day *
mean_session_views * 1.32`` (100k users x 60 days ~ 9.5M events, ~1.5 minutes)::

    shop = generate_shop(ShopConfig(users=3000, items=1500, days=60, seed=42))
    shop.save("runs/demo/data")  # events.parquet, items.parquet, truth.npz, shop.json
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys import columns as C
from recsys.configfile import StrictModel, describe
from recsys.data.io import write_dataset
from recsys.data.synthetic_truth import (
    CATEGORIES,
    DAY,
    DEVICE_SHARE,
    NEVER,
    Catalog,
    ShopTruth,
    TruthParams,
    draw_catalog,
    draw_users,
)
from recsys.errors import ConfigError

WEEKDAY_WEIGHT = (1.1, 1.0, 1.0, 0.97, 0.9, 0.95, 1.15)  # Mon..Sun: Sunday/Monday peaks
HOUR_WEIGHT = (3, 2, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 7, 6, 6, 6, 7, 8, 10, 11, 10, 8, 5)
DEVICE_CART_SHIFT = (0.15, -0.15, 0.0, 0.3, -0.3)  # app and desktop shoppers convert more
TOP_CATEGORIES = 4  # categories per user whose items are scored for the candidate list
EVENTS_PER_VIEW = 1.32  # measured with the default funnel: (views + clicks + carts + buys) / slots


class ShopConfig(StrictModel):
    """Size, seed and behaviour knobs of the synthetic shop; an unknown or bad value is an error.

    Events scale with ``users * days * sessions_per_user_day * mean_session_views * 1.32``;
    with the defaults ~1.6 events per user per day, so 100k users x 60 days ~ 9.5M events.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: int = Field(3000, ge=1)  # shoppers; events grow linearly with users * days
    items: int = Field(1500, ge=1)  # catalog size (at least one item per category)
    days: int = Field(60, ge=1, le=3660)  # length of the period
    seed: int = Field(42, ge=0)  # the only source of randomness: same seed, same files
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)  # first instant (naive = UTC)
    # a few dominant categories and a long tail; at most len(CATEGORIES) = 16
    n_categories: int = Field(12, ge=1, le=len(CATEGORIES))
    brands_per_category: int = Field(8, ge=1, le=50)  # a brand lives in one category
    # THE volume knob: mean sessions per user per day (times each user's activity, mean 1)
    sessions_per_user_day: float = Field(0.2, gt=0, le=50)
    # 1 + negative binomial: most sessions short, a few long; capped by max_session_views
    mean_session_views: float = Field(6.0, ge=1, le=100)
    max_session_views: int = Field(40, ge=1, le=500)
    # funnel odds for an item at the user's typical utility (observed rates come out close)
    click_rate: float = Field(0.35, gt=0, lt=1)  # P(click | view)
    cart_rate: float = Field(0.14, gt=0, lt=1)  # P(add_to_cart | click)
    purchase_rate: float = Field(0.42, gt=0, lt=1)  # P(purchase | add_to_cart)
    # logit per utility unit at each stage: how much taste, not chance, drives the funnel
    click_slope: float = Field(0.8, ge=0)
    cart_slope: float = Field(0.6, ge=0)
    purchase_slope: float = Field(0.4, ge=0)
    new_item_share: float = Field(0.25, ge=0, lt=1)  # launched during the period: cold items
    stockout_share: float = Field(0.04, ge=0, lt=1)  # run out in the second half of the period
    # sessions of consumable lovers that open on their staple item: repeat purchases
    replenish_rate: float = Field(0.15, ge=0, le=1)
    replenish_boost: float = Field(2.0, ge=0)  # logit bonus: the user came to buy it
    popular_share: float = Field(0.15, ge=0, le=1)  # views from global popularity, not taste
    category_zipf: float = Field(1.0, ge=0)  # popularity skew of categories (item counts: half)
    brand_zipf: float = Field(1.1, ge=0)  # popularity skew of brands within a category
    # Dirichlet concentration of category tastes: ~1 puts most mass on 1-3 categories
    taste_concentration: float = Field(1.0, gt=0)
    category_floor: float = Field(1e-3, gt=0, le=1)  # an ignored category's utility: log(floor)
    brand_sd: float = Field(0.8, ge=0)  # spread of per-user brand affinity (utility units)
    quality_sd: float = Field(0.5, ge=0)  # item quality: the part everybody agrees on
    price_sigma: float = Field(0.5, ge=0, le=3)  # log-normal price spread around the median
    style_dim: int = Field(8, ge=1, le=64)  # latent style; dims past 8 never appear in text
    style_weight: float = Field(0.8, ge=0)  # weight of the user-item style match
    fresh_boost: float = Field(1.5, ge=0)  # utility bonus of a just-launched item ...
    fresh_days: float = Field(10.0, gt=0)  # ... decaying with this time constant
    focus_share: float = Field(0.7, ge=0, le=1)  # views from the session's focus category
    text_noise: float = Field(0.1, ge=0, le=1)  # description words from another category
    candidates_per_user: int = Field(200, ge=1, le=5000)  # top-N list sampled per user

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(describe(exc, "synthetic shop config")) from None

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _one_item_per_category(self) -> ShopConfig:
        if self.items < self.n_categories:
            raise ConfigError(f"synthetic shop config: items = {self.items} < n_categories = "
                              f"{self.n_categories} (expected at least one item per category)")
        return self

    def events_per_user_day(self) -> float:
        """Rule of thumb: sessions/day x views/session x 1.32 events per view (+-10%)."""
        views = min(self.mean_session_views, self.max_session_views, self.candidates_per_user)
        return self.sessions_per_user_day * views * EVENTS_PER_VIEW

    def expected_events(self) -> int:
        """Rough number of events this config yields: users x days x events_per_user_day()."""
        return round(self.users * self.days * self.events_per_user_day())

    @classmethod
    def for_target_events(cls, n_events: int, seed: int = 42, days: int = 60,
                          **overrides: Any) -> ShopConfig:
        """A config of about ``n_events`` events over ``days``: solves for users; items = users/2
        (at least 200, at most 20,000) unless given.

        >>> ShopConfig.for_target_events(10_000_000).users
        105219
        """
        if n_events < 1 or "users" in overrides:
            raise ConfigError(f"synthetic shop: for_target_events(n_events={n_events}) solves "
                              f"for users (expected n_events >= 1 and no users= override)")
        per_user = cls.model_construct(**overrides).events_per_user_day() * days
        users = max(1, round(n_events / per_user)) if per_user > 0 else 1  # bad knob: cls() says
        items = overrides.pop("items", min(max(users // 2, 200), 20_000))
        return cls(seed=seed, days=days, users=users, items=items, **overrides)

    @property
    def period(self) -> tuple[int, int]:
        """(start, end) of the period in Unix seconds, end exclusive."""
        start = int(self.start.timestamp())
        return start, start + self.days * DAY


@dataclass(frozen=True, eq=False)
class Shop:
    """A generated shop: canonical ``events`` and ``items`` frames and the ``truth`` behind them."""

    config: ShopConfig
    events: pd.DataFrame
    items: pd.DataFrame
    truth: ShopTruth

    def summary(self) -> dict[str, Any]:
        """Counts worth knowing about the data (saved in ``shop.json``)."""
        start, end = self.config.period
        cold_from = start + int(0.85 * (end - start))
        first_seen = self.truth.item_first_seen
        counts = self.events[C.EVENT_TYPE].value_counts()
        return {
            "events": len(self.events),
            "events_by_type": {t: int(counts.get(t, 0)) for t in C.EVENT_TYPES},
            "expected_events": self.config.expected_events(),
            "sessions": len(self.events[C.SESSION_ID].cat.categories),
            "users_with_events": int(self.events[C.USER_ID].nunique()),
            "items": len(self.items),
            "items_launched_in_period": int(self.truth.item_is_new.sum()),
            "items_launched_in_last_15pct": int((first_seen >= cold_from).sum()),
            "items_out_of_stock": int((~self.items[C.IN_STOCK]).sum()),
            "period": [_iso(start), _iso(end)],
            "categories": {str(n): {"median_price": float(p), "consumable": bool(c)}
                           for n, p, c in zip(self.truth.category_names,
                                              self.truth.category_median_price,
                                              self.truth.category_consumable, strict=True)},
        }

    def save(self, directory: str | Path) -> Path:
        """Write events/items Parquet, ``truth.npz`` and ``shop.json``; returns the directory."""
        directory = write_dataset(directory, self.events, self.items)
        info = {"config": self.config.model_dump(mode="json"), "summary": self.summary()}
        return self.truth.save(directory, info)


def generate_shop(config: ShopConfig) -> Shop:
    """Generate the whole shop from ``config``; the same config gives identical frames."""
    rng = np.random.default_rng(config.seed)
    catalog = draw_catalog(config, rng)
    users = draw_users(config, rng)
    cand = _candidates(config, catalog, users)
    start, end = config.period
    params = TruthParams(
        start=start, end=end, click_rate=config.click_rate, cart_rate=config.cart_rate,
        purchase_rate=config.purchase_rate, click_slope=config.click_slope,
        cart_slope=config.cart_slope, purchase_slope=config.purchase_slope,
        fresh_boost=config.fresh_boost, fresh_days=config.fresh_days,
        category_floor=config.category_floor, device_cart_shift=DEVICE_CART_SHIFT)
    specs = CATEGORIES[:config.n_categories]
    truth = ShopTruth(
        params=params, user_ids=_names("u", config.users, 6),
        item_ids=_names("i", config.items, 5),
        category_names=np.array([s.name for s in specs]),
        category_median_price=np.array([s.median_price for s in specs], dtype=np.float64),
        category_consumable=np.array([s.consumable for s in specs]),
        user_reference=cand.reference, user_staple=cand.staple, **users, **catalog.arrays)
    sessions = _sessions(config, truth, cand, rng)
    if len(sessions.user) == 0:
        raise ConfigError(f"synthetic shop config: {config.users} users x {config.days} days x "
                          f"{config.sessions_per_user_day} sessions/day drew no session at all "
                          f"(raise one of them)")
    bounds = list(range(0, len(sessions.user), 200_000)) + [len(sessions.user)]
    columns = [_chunk_events(config, truth, cand, sessions, lo, hi, rng)
               for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    merged = _once_for_durables(truth, [np.concatenate(c) for c in zip(*columns, strict=True)])
    events = _frame(truth, sessions, merged)
    return Shop(config, events, _items_frame(truth, catalog), truth)


# ---- candidate items

@dataclass(frozen=True)
class _Candidates:
    """Each user's top-N items by peak utility, grouped by category (favourite first)."""

    items: np.ndarray  # (U, N) int32
    utility: np.ndarray  # (U, N) float32, without the freshness bonus
    cdf: np.ndarray  # (U, N) float32: cumulative softmax of peak utility, last column 1
    bounds: np.ndarray  # (U, M + 1) int16: row positions where each favourite category starts
    reference: np.ndarray  # (U,) float32: softmax-weighted mean utility (centres the funnel)
    staple: np.ndarray  # (U,) int32: favourite consumable from the initial catalog, or -1


def _candidates(cfg: ShopConfig, catalog: Catalog, users: dict[str, np.ndarray]) -> _Candidates:
    """Each user's top-N items among their favourite categories, in chunks of users.

    Only the user's ``TOP_CATEGORIES`` best categories are scored (more when the catalog is so
    small that they hold fewer than N items): a category the user ignores is ``log(floor)``
    behind and would not make the list anyway, and skipping it cuts the work several-fold. New
    items are ranked by their launch-day utility (peak freshness), so a just-launched item in a
    favourite category or brand is among the candidates when it appears; sampling corrects for
    the decayed bonus by rejection.
    """
    a = catalog.arrays
    n_items, n_users, k = cfg.items, cfg.users, cfg.n_categories
    cat, brand = a["item_category"].astype(np.intp), a["item_brand"].astype(np.intp)
    by_cat = np.argsort(cat, kind="stable")
    cat_start = np.searchsorted(cat[by_cat], np.arange(k + 1))
    n_cand = min(cfg.candidates_per_user, n_items)
    enough = int(np.searchsorted(np.cumsum(np.sort(np.diff(cat_start))), n_cand)) + 1
    n_top = min(k, max(TOP_CATEGORIES, enough))
    cat_util = np.log(users["user_category_affinity"] + np.float32(cfg.category_floor))
    rank_of = np.full((n_users, k), -1, dtype=np.int64)  # rank of category c for user u
    best_cats = np.argsort(-cat_util, axis=1, kind="stable")[:, :n_top]
    rank_of[np.arange(n_users)[:, None], best_cats] = np.arange(n_top)
    item_small = np.vstack([-a["item_rel_log_price"], a["item_appeal"], a["item_style"].T]
                           ).astype(np.float32)
    user_small = np.hstack([users["user_price_sensitivity"][:, None],
                            np.ones((n_users, 1), dtype=np.float32), users["user_style"]])
    peak_bonus = (cfg.fresh_boost * a["item_is_new"]).astype(np.float32)
    consumable = np.array([s.consumable for s in CATEGORIES[:k]])
    out = _Candidates(items=np.empty((n_users, n_cand), dtype=np.int32),
                      utility=np.empty((n_users, n_cand), dtype=np.float32),
                      cdf=np.empty((n_users, n_cand), dtype=np.float32),
                      bounds=np.empty((n_users, n_top + 1), dtype=np.int16),
                      reference=np.empty(n_users, dtype=np.float32),
                      staple=np.empty(n_users, dtype=np.int32))
    step = max(1, 4_000_000 // (n_top * n_cand))
    for lo in range(0, n_users, step):
        hi = min(lo + step, n_users)
        # per user: n_top blocks of n_cand columns, one per favourite category, in rank order
        buf_items = np.full((hi - lo, n_top * n_cand), -1, dtype=np.int32)
        buf_score = np.full((hi - lo, n_top * n_cand), -np.inf, dtype=np.float32)
        for c in range(k):
            members = np.flatnonzero(rank_of[lo:hi, c] >= 0)
            items_c = by_cat[cat_start[c]:cat_start[c + 1]]
            take = min(n_cand, len(items_c))
            sub = max(1, 8_000_000 // max(len(items_c), 1))
            for s0 in range(0, len(members), sub):
                mem = members[s0:s0 + sub]
                u = lo + mem
                score = np.take(users["user_brand_affinity"][u], brand[items_c], axis=1)
                # einsum, not BLAS: the same bits whatever the thread count
                score += np.einsum("ud,di->ui", user_small[u], item_small[:, items_c])
                score += peak_bonus[items_c]
                cols = _top_columns(score, take)
                dest = ((mem * n_top + rank_of[u, c])[:, None] * n_cand + np.arange(take)).ravel()
                buf_items.ravel()[dest] = items_c[cols].ravel()
                buf_score.ravel()[dest] = (np.take_along_axis(score, cols, axis=1)
                                           + cat_util[u, c][:, None]).ravel()
        # the user's overall top-N; increasing columns keep it grouped by category rank
        cols = _top_columns(buf_score, n_cand)
        _summarise(out, lo, np.take_along_axis(buf_items, cols, axis=1),
                   np.take_along_axis(buf_score, cols, axis=1), cols // n_cand, peak_bonus,
                   consumable[cat] & ~a["item_is_new"])
    return out


def _summarise(out: _Candidates, lo: int, items: np.ndarray, peak: np.ndarray,
               block: np.ndarray, peak_bonus: np.ndarray, staple_ok: np.ndarray) -> None:
    """Fill rows ``lo..`` of ``out``: sampling CDF, category bounds, reference, staple."""
    hi = lo + len(items)
    rows = np.arange(len(items))
    utility = peak - peak_bonus[items]
    cdf = np.cumsum(np.exp(peak - peak.max(axis=1, keepdims=True)), axis=1)
    out.items[lo:hi], out.utility[lo:hi], out.cdf[lo:hi] = items, utility, cdf / cdf[:, -1:]
    n_top = out.bounds.shape[1] - 1
    out.bounds[lo:hi] = np.stack([(block < m).sum(axis=1) for m in range(n_top + 1)], axis=1)
    weights = np.exp(utility - utility.max(axis=1, keepdims=True))
    reference = (weights * utility).sum(axis=1) / weights.sum(axis=1)
    out.reference[lo:hi] = reference
    candidate = np.where(staple_ok[items], utility, -np.inf)
    best = candidate.argmax(axis=1)
    liked = candidate[rows, best] >= reference - 1.0
    out.staple[lo:hi] = np.where(liked, items[rows, best], -1)


# ---- sessions and events

@dataclass(frozen=True)
class _Sessions:
    user: np.ndarray  # (S,) int32
    start: np.ndarray  # (S,) int64 Unix seconds
    device: np.ndarray  # (S,) int8
    n_views: np.ndarray  # (S,) int64
    offsets: np.ndarray  # (S + 1,) first slot of each session in the slot arrays
    checkout: np.ndarray  # (S,) int64 seconds from the last view to checkout
    replenish: np.ndarray  # (S,) bool: the first view is the user's staple
    gap: np.ndarray  # (V,) int64 seconds from this view to the next
    popular: np.ndarray  # (V,) bool: slot filled from global popularity
    popular_item: np.ndarray  # (V,) int32: popularity draw (also the fallback)


def _sessions(cfg: ShopConfig, truth: ShopTruth, cand: _Candidates,
              rng: np.random.Generator) -> _Sessions:
    """Session skeletons: who, when (weekday and hour patterns), device, length, slot gaps."""
    start_s, end_s = cfg.period
    counts = rng.poisson(truth.user_activity * cfg.sessions_per_user_day * cfg.days)
    user = np.repeat(np.arange(cfg.users, dtype=np.int32), counts)
    n = len(user)
    weekday = (cfg.start.weekday() + np.arange(cfg.days)) % 7
    day_w = np.array(WEEKDAY_WEIGHT)[weekday]
    day = rng.choice(cfg.days, n, p=day_w / day_w.sum())
    hour_w = np.array(HOUR_WEIGHT, dtype=np.float64)
    habitual = rng.random(n) < 0.7  # most sessions near the user's own peak hour
    hour = np.where(habitual, truth.user_peak_hour[user] + rng.normal(0.0, 1.5, n),
                    rng.choice(24, n, p=hour_w / hour_w.sum()) + rng.random(n)) % 24
    start = start_s + day * DAY + (hour * 3600).astype(np.int64)
    order = np.argsort(start, kind="stable")
    user, start = user[order], start[order]
    device = np.where(rng.random(n) < 0.8, truth.user_device[user],
                      rng.choice(len(DEVICE_SHARE), n, p=DEVICE_SHARE)).astype(np.int8)
    extra = cfg.mean_session_views - 1
    n_views = 1 + rng.negative_binomial(2, 2 / (2 + extra), n)
    n_views = np.minimum(n_views, min(cfg.max_session_views, cand.items.shape[1]))
    offsets = np.concatenate([[0], np.cumsum(n_views)])
    gap = 4 + (40 * rng.standard_exponential(int(offsets[-1]))).astype(np.int64)
    checkout = 30 + np.minimum(90 * rng.standard_exponential(n), 540).astype(np.int64)
    span = np.add.reduceat(gap, offsets[:-1]) if n else np.zeros(0, np.int64)
    # keep every event of a session (views, checkout, purchases) inside the period
    start = np.maximum(np.minimum(start, end_s - 1 - span - 600 - n_views), start_s)
    replenish = (cand.staple[user] >= 0) & (rng.random(n) < cfg.replenish_rate)
    popular = rng.random(int(offsets[-1])) < cfg.popular_share
    popular[offsets[:-1][replenish]] = False
    slot_day = np.repeat((start - start_s) // DAY, n_views)
    return _Sessions(user, start, device, n_views, offsets, checkout, replenish, gap, popular,
                     _popular_items(cfg, truth, slot_day, rng))


def _popular_items(cfg: ShopConfig, truth: ShopTruth, slot_day: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """One draw per slot from that day's popularity (appeal + freshness, launched items only)."""
    start_s, _ = cfg.period
    out = np.zeros(len(slot_day), dtype=np.int32)
    order = np.argsort(slot_day, kind="stable")
    bounds = np.searchsorted(slot_day[order], np.arange(cfg.days + 1))
    items = np.arange(cfg.items)
    for d in range(cfg.days):
        slots = order[bounds[d]:bounds[d + 1]]
        if len(slots) == 0:
            continue
        t = np.asarray(start_s + d * DAY, dtype=np.int64)
        weight = np.exp(truth.item_appeal + truth.freshness(items, t))
        weight = weight * (truth.item_first_seen <= t)
        cdf = np.cumsum(weight)
        pick = np.searchsorted(cdf, rng.random(len(slots)) * cdf[-1], side="right")
        out[slots] = np.minimum(pick, np.flatnonzero(weight)[-1])
    return out


def _top_columns(score: np.ndarray, take: int) -> np.ndarray:
    """Column indices of the ``take`` largest values of each row, in increasing column order.

    A values-only partition finds each row's threshold (~5x faster than argpartition); ties at
    the threshold keep the leftmost columns.
    """
    n = score.shape[1]
    if take >= n:
        return np.broadcast_to(np.arange(n), score.shape)
    kth = np.partition(score, n - take, axis=1)[:, n - take]
    flat = np.flatnonzero(score >= kth[:, None])
    if len(flat) > len(score) * take:  # ties at the threshold: keep each row's first `take`
        counts = np.bincount(flat // n, minlength=len(score))
        rank = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        flat = flat[rank < take]
    return (flat % n).reshape(len(score), take)


def _personal_picks(cfg: ShopConfig, truth: ShopTruth, cand: _Candidates, user: np.ndarray,
                    start: np.ndarray, n_views: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """One item per view slot by inverse-CDF sampling of the user's candidates, -1 if none fits.

    A first draw fixes the session's focus category; each slot then samples inside that
    category (``focus_share``) or from all candidates. Draws of items not launched at the session
    start, or of new items whose freshness has decayed since the peak the CDF assumed, are
    rejected and redrawn (rejection sampling, so launched items keep their exact odds).
    """
    n_cand = cand.items.shape[1]
    everything = np.zeros((len(user), 2), dtype=np.int64)
    everything[:, 1] = n_cand - 1
    focus = _draw(cand.cdf, user, rng.random(len(user), dtype=np.float32), everything)
    edges = cand.bounds[user].astype(np.int64)
    block = (edges[:, 1:] <= focus[:, None]).sum(axis=1)  # the focus item's category block
    seg = np.stack([edges[np.arange(len(user)), block],
                    edges[np.arange(len(user)), block + 1] - 1], axis=1)
    below = np.where(seg[:, 0] > 0, cand.cdf[user, np.maximum(seg[:, 0] - 1, 0)], 0.0)
    above = cand.cdf[user, seg[:, 1]]
    slot = np.repeat(np.arange(len(user)), n_views)
    picks = np.full(len(slot), -1, dtype=np.int32)
    todo = np.arange(len(slot))
    for _ in range(8):
        s = slot[todo]
        r = rng.random(len(todo), dtype=np.float32)
        inside = rng.random(len(todo)) < cfg.focus_share
        q = np.where(inside, below[s] + r * (above[s] - below[s]), r).astype(np.float32)
        pos = _draw(cand.cdf, user[s], q, np.where(inside[:, None], seg[s], everything[s]))
        item = cand.items[user[s], pos]
        t = start[s]
        keep_odds = np.exp(truth.freshness(item, t) - cfg.fresh_boost * truth.item_is_new[item])
        ok = (truth.item_first_seen[item] <= t) & (rng.random(len(todo)) < keep_odds)
        picks[todo[ok]] = item[ok]
        todo = todo[~ok]
    return picks


def _draw(cdf: np.ndarray, user: np.ndarray, q: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """First position ``p`` in ``bounds[:, 0]..bounds[:, 1]`` of row ``user`` with cdf > q.

    A vectorised bisection over each user's own row: log2(N) gathers instead of a search in
    one flat array of all users' rows (much faster: the rows stay in cache).
    """
    lo, hi = bounds[:, 0].copy(), bounds[:, 1].copy()
    for _ in range(int(np.ceil(np.log2(max(cdf.shape[1], 2))))):
        mid = (lo + hi) // 2
        right = cdf[user, mid] <= q
        lo = np.where(right, mid + 1, lo)
        hi = np.where(right, hi, mid)
    return np.minimum(lo, bounds[:, 1])


def _chunk_events(cfg: ShopConfig, truth: ShopTruth, cand: _Candidates, ses: _Sessions,
                  lo: int, hi: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Events of sessions ``lo..hi``: views, then vectorised click/cart/purchase draws."""
    first, last = int(ses.offsets[lo]), int(ses.offsets[hi])
    local = np.repeat(np.arange(hi - lo), ses.n_views[lo:hi])
    user, start = ses.user[lo:hi], ses.start[lo:hi]
    personal = _personal_picks(cfg, truth, cand, user, start, ses.n_views[lo:hi], rng)
    item = np.where(ses.popular[first:last] | (personal < 0), ses.popular_item[first:last],
                    personal)
    repl = ses.replenish[lo:hi]
    head = ses.offsets[lo:hi] - first  # slot index of each session's first view
    item[head[repl]] = cand.staple[user[repl]]
    intent = np.zeros(len(item))
    intent[head[repl]] = cfg.replenish_boost
    # an item seen twice in a session is one view: keep the first (so a session's first stays)
    key = local.astype(np.int64) * cfg.items + item
    order = np.argsort(key, kind="stable")
    keep = np.ones(len(key), dtype=bool)
    keep[order[1:]] = key[order[1:]] != key[order[:-1]]
    local, item, intent, gap = local[keep], item[keep], intent[keep], ses.gap[first:last][keep]
    n_views = np.bincount(local, minlength=hi - lo)
    head = np.cumsum(n_views) - n_views
    before = np.cumsum(gap) - gap  # seconds from the chunk's first slot to this view
    t_view = start[local] + before - before[head][local]
    t_checkout = start + np.add.reduceat(gap, head) + ses.checkout[lo:hi]
    slot_user = user[local]
    z = truth.pair_utility(slot_user, item, t_view) - truth.user_reference[slot_user]
    device = ses.device[lo:hi][local]
    relevance, p_cart, p_buy = truth.stage_probabilities(z, device, intent)
    t_click = t_view + np.maximum(1, gap // 5)
    t_cart = t_view + np.maximum(2, gap // 2)
    click = rng.random(len(item)) < relevance
    cart = click & (rng.random(len(item)) < p_cart) & truth.available(item, t_cart)
    in_stock = truth.available(item, (t_checkout + n_views)[local])
    buy = cart & (rng.random(len(item)) < p_buy) & in_stock
    bought = np.cumsum(buy) - buy
    t_buy = t_checkout[local] + bought - bought[head][local]
    consumable = truth.category_consumable[truth.item_category[item]]
    u = rng.random(len(item))
    many = np.where(consumable, 0.3, 0.15)  # P(quantity > 1); consumables come in packs
    quantity = 1 + (u < many) + (u < many / 3)
    discount = np.where(u > 0.8, 0.05 * np.ceil((u - 0.8) / 0.05), 0.0)  # a few 5-20% deals
    list_price = truth.item_price[item]
    paid = np.round(list_price * (1 - np.where(buy, discount, 0.0)), 2)
    masks = (np.ones(len(item), dtype=bool), click, cart, buy)
    times = (t_view, t_click, t_cart, t_buy)
    session = np.arange(lo, hi, dtype=np.int32)[local]
    parts = [
        [slot_user[m] for m in masks], [item[m].astype(np.int32) for m in masks],
        [t[m] for t, m in zip(times, masks, strict=True)],
        [np.full(int(m.sum()), code, dtype=np.int8) for code, m in enumerate(masks)],
        [np.ones(int(masks[0].sum()), dtype=np.int32)]
        + [quantity[m].astype(np.int32) for m in masks[1:]],
        [list_price[m] for m in masks[:3]] + [paid[buy]],
        [session[m] for m in masks], [device[m] for m in masks],
    ]
    return [np.concatenate(p) for p in parts]


def _once_for_durables(truth: ShopTruth, cols: list[np.ndarray]) -> list[np.ndarray]:
    """Drop repeat purchases of durable goods (nobody re-buys the same jacket; they re-buy
    coffee): a later purchase of a non-consumable the user already bought is removed, its
    add_to_cart stays as an abandoned cart."""
    user, item, t, kind = cols[:4]
    buys = np.flatnonzero(kind == C.EVENT_TYPES.index(C.PURCHASE))
    buys = buys[~truth.category_consumable[truth.item_category[item[buys]]]]
    buys = buys[np.lexsort((t[buys], item[buys], user[buys]))]
    again = (user[buys][1:] == user[buys][:-1]) & (item[buys][1:] == item[buys][:-1])
    if not again.any():
        return cols
    keep = np.ones(len(user), dtype=bool)
    keep[buys[1:][again]] = False
    return [col[keep] for col in cols]


def _frame(truth: ShopTruth, ses: _Sessions, cols: list[np.ndarray]) -> pd.DataFrame:
    """Canonical events frame (categorical ids), sorted by timestamp."""
    user, item, t, kind, quantity, price, session, device = cols
    order = np.argsort(t, kind="stable")
    return pd.DataFrame({
        C.USER_ID: pd.Categorical.from_codes(user[order], categories=pd.Index(truth.user_ids)),
        C.ITEM_ID: pd.Categorical.from_codes(item[order], categories=pd.Index(truth.item_ids)),
        C.TIMESTAMP: _utc(t[order]),
        C.EVENT_TYPE: pd.Categorical.from_codes(kind[order],
                                                categories=pd.Index(list(C.EVENT_TYPES))),
        C.QUANTITY: quantity[order],
        C.PRICE: price[order].astype(np.float64),
        C.SESSION_ID: pd.Categorical.from_codes(
            session[order], categories=pd.Index(_names("s", len(ses.user), 7))),
        C.DEVICE: pd.Categorical.from_codes(device[order], categories=pd.Index(list(C.DEVICES))),
    })


def _items_frame(truth: ShopTruth, catalog: Catalog) -> pd.DataFrame:
    return pd.DataFrame({
        C.ITEM_ID: truth.item_ids,
        C.TITLE: catalog.titles,
        C.CATEGORY: pd.Categorical.from_codes(truth.item_category,
                                              categories=pd.Index(truth.category_names)),
        C.BRAND: pd.Categorical.from_codes(truth.item_brand,
                                           categories=pd.Index(truth.brand_names)),
        C.PRICE: truth.item_price,
        C.DESCRIPTION: catalog.descriptions,
        C.IN_STOCK: truth.item_stockout == NEVER,
        C.FIRST_SEEN: _utc(truth.item_first_seen),
    })


def _utc(seconds: np.ndarray) -> pd.Series:
    ns = (seconds.astype(np.int64) * 1_000_000_000).view("datetime64[ns]")
    return pd.Series(ns).dt.tz_localize("UTC")


def _names(prefix: str, n: int, width: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers: u000000, u000001, ... (wider when n needs it)."""
    digits = max(width, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), digits))


def _iso(seconds: int) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()
