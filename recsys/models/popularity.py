"""Popularity baselines: all-time, recent (time-decayed) and per-category.

Popularity is the floor every personalised model must beat, the fallback for users with no
history, and a source of ranker features: :meth:`PopularityModel.item_popularity` exposes the
all-time, recent, within-category share and trend arrays, all aligned to internal item ids.

Event weights come from :func:`recsys.data.interactions.event_weights` (a purchase counts more
than a view), so "popular" means "much interacted with, weighted by funnel depth", not just
"often viewed".
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.data.interactions import InteractionConfig, event_weights
from recsys.errors import ConfigError, DataError
from recsys.models.base import Model, TrainingData, ValidationData, top_k
from recsys.persist import read_arrays, read_config, read_meta, write_arrays, write_meta

Mode = Literal["all_time", "recent", "category"]
PopularityKind = Literal["all_time", "recent", "category_share", "trend", "seasonal"]

# Weight of overall popularity inside category mode: small enough never to outrank an item of
# one of the user's categories, large enough to order the remaining items by popularity.
_FALLBACK = 1e-3
KIND = "popularity"
FORMAT_VERSION = 2
ARRAYS = ("all_time", "recent", "category_share", "trend", "seasonal", "item_category",
          "categories")


class PopularityConfig(StrictModel):
    """How popularity is measured and which flavour :meth:`PopularityModel.score` uses."""

    # all_time: the robust default; recent: for catalogs with seasonal churn; category: a cheap
    # personalisation (popular items of the categories the user already buys from).
    mode: Mode = "all_time"
    # A week: shop traffic has a weekly rhythm, so a shorter half-life chases weekdays.
    half_life_days: float = Field(default=7.0, gt=0)
    # Trend compares the last `trend_days` to the `trend_days` before; a week for the same reason.
    trend_days: float = Field(default=7.0, gt=0)
    # Half-width of the window a year back that counts as "this season last year": a month
    # either side (retail seasons, Christmas, summer, are weeks long).
    season_days: float = Field(default=30.0, gt=0)
    # A user's 3 strongest categories cover most of their history in typical shops; more
    # categories dilute the signal towards overall popularity.
    top_categories: int = Field(default=3, ge=1)
    # Event-type weights and quantity handling; decay is configured by `half_life_days` above.
    interactions: InteractionConfig = Field(
        default_factory=lambda: InteractionConfig.model_validate({}))

    def model_post_init(self, __context: object) -> None:
        if self.interactions.half_life_days is not None:
            raise ConfigError("popularity.interactions.half_life_days is set; popularity uses "
                              "popularity.half_life_days for its 'recent' mode instead")


class PopularityModel(Model):
    """Recommend what many users interact with, optionally recent or within the user's categories.

    >>> model = PopularityModel(PopularityConfig(mode="recent")).fit(data)  # doctest: +SKIP
    >>> ids, scores = model.recommend(0, data.matrix[[0]], k=10)  # doctest: +SKIP
    >>> trend = model.item_popularity("trend")  # doctest: +SKIP

    Scores do not depend on the user id (any id, including ``-1`` for an unknown user, is
    accepted); category mode depends on the ``user_items`` history rows only.
    """

    name = "popularity"

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.all_time_: np.ndarray | None = None
        self.recent_: np.ndarray | None = None
        self.category_share_: np.ndarray | None = None
        self.trend_: np.ndarray | None = None
        self.seasonal_: np.ndarray | None = None
        self.item_category_: np.ndarray | None = None
        self.categories_: np.ndarray | None = None

    # ----------------------------------------------------------------------------------- fit
    def fit(self, data: TrainingData, valid: ValidationData | None = None) -> Self:
        """Count weighted events per item; ``valid`` is accepted for the contract and unused."""
        n_items = len(data.items)
        if "item_idx" not in data.events:
            raise DataError("popularity: TrainingData.events lacks the 'item_idx' column "
                            "(build TrainingData with recsys.data.training.prepare_training)")
        if len(data.item_table) != n_items or C.CATEGORY not in data.item_table:
            raise DataError(f"popularity: item_table has {len(data.item_table)} rows and columns "
                            f"{list(data.item_table.columns)} (expected {n_items} rows with a "
                            f"'{C.CATEGORY}' column)")
        events = data.events
        items = events["item_idx"].to_numpy(dtype=np.int64)
        w = event_weights(events, self.config.interactions).astype(np.float64)
        age_days = np.zeros(len(events))
        if len(events):
            age = (pd.Timestamp(data.reference_time) - events[C.TIMESTAMP])
            age_days = np.maximum(age.dt.total_seconds().to_numpy() / 86400.0, 0.0)
        decay = np.power(0.5, age_days / self.config.half_life_days)
        all_time = np.bincount(items, weights=w, minlength=n_items)
        recent = np.bincount(items, weights=w * decay, minlength=n_items)
        window = self.config.trend_days
        last = np.bincount(items, weights=w * (age_days < window), minlength=n_items)
        prev = np.bincount(items, weights=w * ((age_days >= window) & (age_days < 2 * window)),
                           minlength=n_items)
        codes, names = pd.factorize(data.item_table[C.CATEGORY].astype(str), sort=True)
        codes = np.asarray(codes, dtype=np.int64)
        cat_total = np.bincount(codes, weights=all_time, minlength=len(names))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(cat_total[codes] > 0, all_time / cat_total[codes], 0.0)
        self.all_time_ = all_time.astype(np.float32)
        self.recent_ = recent.astype(np.float32)
        self.category_share_ = share.astype(np.float32)
        # log ratio with +1 smoothing: symmetric for rises and falls, 0 for a flat or new-and-
        # silent item, and bounded for items with no previous-window events
        self.trend_ = (np.log1p(last) - np.log1p(prev)).astype(np.float32)
        # the same weeks a year before the reference time: what the season brings back
        season = np.abs(age_days - 365.0) <= self.config.season_days
        self.seasonal_ = np.bincount(items, weights=w * season, minlength=n_items).astype(
            np.float32)
        self.item_category_ = codes
        self.categories_ = np.asarray(names, dtype=str)
        return self

    # ---------------------------------------------------------------------------- queries
    @property
    def n_items(self) -> int:
        self._check_fitted("all_time_")
        assert self.all_time_ is not None
        return len(self.all_time_)

    def item_popularity(self, kind: PopularityKind = "all_time") -> np.ndarray:
        """A float32 copy of one per-item popularity array (length ``n_items``).

        ``all_time``: weighted event count; ``recent``: the same with a half-life decay back
        from the reference time; ``category_share``: the item's share of its category's
        all-time popularity; ``trend``: ``log((last window + 1) / (previous window + 1))``;
        ``seasonal``: weighted count within ``season_days`` of one year before the reference
        time.
        """
        self._check_fitted("all_time_")
        arrays = {"all_time": self.all_time_, "recent": self.recent_,
                  "category_share": self.category_share_, "trend": self.trend_,
                  "seasonal": self.seasonal_}
        if kind not in arrays:
            raise DataError(f"popularity kind {kind!r} (expected one of {', '.join(arrays)})")
        out = arrays[kind]
        assert out is not None
        return out.copy()

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """(len(userids), n_items) float32; rows differ only in category mode."""
        self._check_fitted("all_time_")
        assert self.all_time_ is not None and self.recent_ is not None
        userids = np.atleast_1d(np.asarray(userids, dtype=np.int64))
        _check_user_items(user_items, len(userids), self.n_items)
        if self.config.mode == "recent":
            return np.tile(self.recent_, (len(userids), 1))
        if self.config.mode == "all_time":
            return np.tile(self.all_time_, (len(userids), 1))
        return self._category_scores(sp.csr_matrix(user_items))

    def _category_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """p(category | user history, top categories only) x within-category share, plus a
        small overall-popularity term; an empty history gives plain overall popularity."""
        assert self.item_category_ is not None and self.categories_ is not None
        assert self.all_time_ is not None and self.category_share_ is not None
        n_cat = len(self.categories_)
        onehot = sp.csr_matrix((np.ones(self.n_items), (np.arange(self.n_items),
                                                        self.item_category_)),
                               shape=(self.n_items, n_cat))
        dist = np.asarray((abs(user_items) @ onehot).todense(), dtype=np.float64)
        keep = min(self.config.top_categories, n_cat)
        if keep < n_cat:
            # zero every category outside the row's top `keep` (ties broken by category order)
            drop = np.argsort(-dist, axis=1, kind="stable")[:, keep:]
            np.put_along_axis(dist, drop, 0.0, axis=1)
        totals = dist.sum(axis=1, keepdims=True)
        dist = np.divide(dist, totals, out=np.zeros_like(dist), where=totals > 0)
        top = float(self.all_time_.max()) if len(self.all_time_) else 0.0
        overall = self.all_time_ / top if top > 0 else np.zeros_like(self.all_time_)
        scores = dist[:, self.item_category_] * self.category_share_ + _FALLBACK * overall
        empty = totals[:, 0] == 0
        scores[empty] = overall
        return scores.astype(np.float32)

    def with_items(self, item_table: pd.DataFrame) -> PopularityModel:
        """A copy over ``item_table`` (old items first, new ones appended with no events; a
        changed category moves an item's share to its new category)."""
        self._check_fitted("all_time_")
        grown = copy.copy(self)
        n_new = len(item_table) - self.n_items

        def pad(a: np.ndarray | None) -> np.ndarray:
            assert a is not None
            return np.concatenate([a, np.zeros(n_new, a.dtype)])

        grown.all_time_, grown.recent_ = pad(self.all_time_), pad(self.recent_)
        grown.trend_, grown.seasonal_ = pad(self.trend_), pad(self.seasonal_)
        codes, names = pd.factorize(item_table[C.CATEGORY].astype(str), sort=True)
        codes = np.asarray(codes, dtype=np.int64)
        totals = np.bincount(codes, weights=grown.all_time_, minlength=len(names))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(totals[codes] > 0, grown.all_time_ / totals[codes], 0.0)
        grown.category_share_ = share.astype(np.float32)
        grown.item_category_, grown.categories_ = codes, np.asarray(names, dtype=str)
        return grown

    def similar_items(self, itemid: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The most popular (all-time) other items of ``itemid``'s category."""
        self._check_fitted("all_time_")
        assert self.item_category_ is not None and self.all_time_ is not None
        if not 0 <= int(itemid) < self.n_items:
            raise DataError(f"itemid {itemid} out of range (model has {self.n_items} items)")
        if k < 1:
            raise DataError(f"k = {k} (expected k >= 1)")
        same = self.item_category_ == self.item_category_[int(itemid)]
        scores = np.where(same, self.all_time_, -np.inf).astype(np.float32)
        scores[int(itemid)] = -np.inf
        ids, vals = top_k(scores[None, :], k)
        return ids[0], vals[0]

    # ----------------------------------------------------------------------------- persist
    def save(self, directory: str | Path) -> list[str]:
        """``popularity.npz`` (no pickle) + ``popularity.json`` (config)."""
        self._check_fitted("all_time_")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"all_time": self.all_time_, "recent": self.recent_,
                  "category_share": self.category_share_, "trend": self.trend_,
                  "seasonal": self.seasonal_,
                  "item_category": self.item_category_, "categories": self.categories_}
        assert all(v is not None for v in arrays.values())
        return [write_arrays(directory, KIND, arrays),  # type: ignore[arg-type]
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                           config=self.config.model_dump(mode="json"))]

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        directory = Path(directory)
        meta = read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        path = directory / f"{KIND}.json"
        model = cls(read_config(meta, path, PopularityConfig))
        z = read_arrays(directory, KIND, ARRAYS)
        model.all_time_, model.recent_ = z["all_time"], z["recent"]
        model.category_share_, model.trend_ = z["category_share"], z["trend"]
        model.seasonal_ = z["seasonal"]
        model.item_category_, model.categories_ = z["item_category"], z["categories"]
        return model


def _check_user_items(user_items: sp.spmatrix, n_rows: int, n_items: int) -> None:
    """The contract's shape check: one history row per user, one column per item."""
    if user_items.shape[0] != n_rows:
        raise DataError(f"user_items has {user_items.shape[0]} rows for {n_rows} users "
                        f"(expected 1 row for every user in userids)")
    if user_items.shape[1] != n_items:
        raise DataError(f"user_items has {user_items.shape[1]} columns "
                        f"(expected {n_items}, one per item in the model)")
