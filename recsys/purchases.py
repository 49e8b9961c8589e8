"""Repeat purchases: what a shopper's own baskets say (:class:`Baskets`, per request) and how
items are re-bought across shoppers (:class:`RepeatStats`, fitted).

A basket is the set of items bought at one instant (an order; invoice lines share a timestamp),
so buying the same item on three orders counts three, whatever the quantities. Features and the
repeat-aware sources (``repeat``, ``ppop``, ``tifu``) read both; nothing here depends on the
candidate pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.persist import read_arrays, read_meta, write_arrays, write_meta

DAY = 86400.0
KIND = "repeat_stats"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Baskets:
    """One shopper's purchases as distinct (item, basket) pairs, grouped by item.

    ``items`` (sorted, unique) were bought in ``n_baskets[j]`` baskets, first at ``first[j]``,
    last at ``last[j]`` (epoch seconds), ``events[j]`` purchase events in all; ``pair_item`` /
    ``pair_time`` hold every (item, basket) pair, grouped by item, oldest first.
    """

    items: np.ndarray
    n_baskets: np.ndarray
    events: np.ndarray
    first: np.ndarray
    last: np.ndarray
    pair_item: np.ndarray
    pair_time: np.ndarray
    starts: np.ndarray            # where each item's pairs start in pair_*
    basket_times: np.ndarray      # the shopper's distinct basket times, oldest first

    @classmethod
    def of(cls, items: np.ndarray, times: np.ndarray) -> Baskets:
        """From purchase events (item ids and times, any order)."""
        if len(items) == 0:
            e = np.empty(0, np.int64)
            return cls(e, e, e, e, e, e, e, e, e)
        items = items.astype(np.int64, copy=False)
        order = np.lexsort((times, items))
        it, tt = items[order], times[order]
        new_pair = np.empty(len(it), dtype=bool)
        new_pair[0] = True
        np.not_equal(it[1:], it[:-1], out=new_pair[1:])
        new_pair[1:] |= tt[1:] != tt[:-1]
        pi, pt = it[new_pair], tt[new_pair]
        new_item = np.empty(len(pi), dtype=bool)
        new_item[0] = True
        np.not_equal(pi[1:], pi[:-1], out=new_item[1:])
        starts = np.flatnonzero(new_item)
        ends = np.r_[starts[1:], len(pi)]
        event_starts = np.searchsorted(it, pi[starts])
        events = np.diff(np.r_[event_starts, len(it)])
        return cls(pi[starts], ends - starts, events, pt[starts], pt[ends - 1], pi, pt, starts,
                   np.unique(tt))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def total_baskets(self) -> int:
        return len(self.basket_times)

    def decayed(self, now: int, half_life_days: float) -> np.ndarray:
        """Per item: sum over its baskets of 0.5 ** (age / half-life)."""
        if len(self.items) == 0:
            return np.empty(0)
        w = np.power(0.5, np.maximum(now - self.pair_time, 0) / (half_life_days * DAY))
        return np.add.reduceat(w, self.starts)

    @cached_property
    def mean_gap_days(self) -> np.ndarray:
        """Per item: mean days between its baskets (NaN when bought in one basket only)."""
        gaps = (self.last - self.first) / DAY
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_baskets > 1, gaps / np.maximum(self.n_baskets - 1, 1), np.nan)

    @cached_property
    def repeat_share(self) -> float:
        """Share of the shopper's (item, basket) pairs that re-buy an item (NaN: no purchase)."""
        if len(self.pair_item) == 0:
            return float("nan")
        return 1.0 - len(self.items) / len(self.pair_item)

    def count(self, item: int) -> int:
        """Baskets the item was bought in (0: never)."""
        pos = int(np.searchsorted(self.items, item))
        return int(self.n_baskets[pos]) if pos < len(self.items) and self.items[pos] == item \
            else 0

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``items``, found) for candidate ``ids``."""
        pos = np.searchsorted(self.items, ids)
        pos = np.minimum(pos, max(len(self.items) - 1, 0))
        found = (self.items[pos] == ids) if len(self.items) else np.zeros(len(ids), bool)
        return pos, found


class RepeatStats:
    """Per item, over the training purchases: how many shoppers bought it, how many of them in
    two baskets or more, and the typical days between a shopper's baskets of it.

    >>> # stats = RepeatStats.fit(events_with_idx, n_items); stats.repeat_rate[item]
    """

    def __init__(self, buyers: np.ndarray, repeat_buyers: np.ndarray, gap_days: np.ndarray
                 ) -> None:
        self.buyers = buyers
        self.repeat_buyers = repeat_buyers
        self.gap_days = gap_days          # median over repeat buyers; NaN when none
        # smoothed towards the catalog-wide rate, so an item with two buyers is not 0% or 100%
        prior = float(repeat_buyers.sum()) / max(float(buyers.sum()), 1.0)
        self.repeat_rate = ((repeat_buyers + 2.0 * prior) / (buyers + 2.0)).astype(np.float32)

    @classmethod
    def fit(cls, events: pd.DataFrame, n_items: int) -> RepeatStats:
        """``events`` carry ``user_idx`` and ``item_idx``; only purchases count."""
        buys = events[events[C.EVENT_TYPE].astype(str) == C.PURCHASE]
        pairs = pd.DataFrame({"u": buys["user_idx"].to_numpy(), "i": buys["item_idx"].to_numpy(),
                              "t": buys[C.TIMESTAMP].astype("int64").to_numpy() // 10**9})
        pairs = pairs.drop_duplicates()
        per = pairs.groupby(["u", "i"])["t"].agg(["count", "min", "max"])
        item = per.index.get_level_values("i").to_numpy()
        buyers = np.bincount(item, minlength=n_items).astype(np.float64)
        again = per["count"].to_numpy() > 1
        repeat_buyers = np.bincount(item[again], minlength=n_items).astype(np.float64)
        gap = ((per["max"] - per["min"]) / (per["count"] - 1).clip(lower=1) / DAY).to_numpy()
        gaps = pd.Series(gap[again]).groupby(item[again]).median()
        gap_days = np.full(n_items, np.nan)
        gap_days[gaps.index.to_numpy(dtype=np.int64)] = gaps.to_numpy()
        return cls(buyers, repeat_buyers, gap_days)

    def with_items(self, n_new: int) -> RepeatStats:
        """Also ``n_new`` items nobody has bought yet (their rate is the catalog-wide one)."""
        zeros = np.zeros(n_new)
        return RepeatStats(np.concatenate([self.buyers, zeros]),
                           np.concatenate([self.repeat_buyers, zeros]),
                           np.concatenate([self.gap_days, np.full(n_new, np.nan)]))

    def save(self, directory: Path) -> list[str]:
        return [write_arrays(directory, KIND, {"buyers": self.buyers,
                                               "repeat_buyers": self.repeat_buyers,
                                               "gap_days": self.gap_days}),
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)]

    @classmethod
    def load(cls, directory: Path) -> Self:
        read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        z = read_arrays(directory, KIND, ("buyers", "repeat_buyers", "gap_days"))
        return cls(z["buyers"], z["repeat_buyers"], z["gap_days"])
