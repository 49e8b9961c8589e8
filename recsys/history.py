"""Per-user event history, sliceable by time: one structure for training and serving.

Events are sorted by (user, time) and stored as flat arrays with per-user offsets (CSR-style).
``slice(user, before=t)`` returns the user's events strictly before ``t`` with one binary
search, so point-in-time features for a label at ``t`` cannot see the label or anything later,
and serving (``before=None``) reads the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.data.idmap import IdMap
from recsys.persist import read_arrays, read_meta, write_arrays, write_meta

KIND = "history"
FORMAT_VERSION = 1

# event type codes follow columns.EVENT_TYPES: view=0, click=1, add_to_cart=2, purchase=3
TYPE_CODE = {t: i for i, t in enumerate(C.EVENT_TYPES)}
PURCHASE = TYPE_CODE[C.PURCHASE]
ADD_TO_CART = TYPE_CODE[C.ADD_TO_CART]


@dataclass(frozen=True)
class UserEvents:
    """One user's events, oldest first (internal item ids)."""

    items: np.ndarray       # int32
    types: np.ndarray       # int8, see TYPE_CODE
    times: np.ndarray       # int64 seconds since epoch
    quantity: np.ndarray    # int32
    price: np.ndarray       # float32, NaN when unknown

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def empty(cls) -> UserEvents:
        return cls(np.empty(0, np.int32), np.empty(0, np.int8), np.empty(0, np.int64),
                   np.empty(0, np.int32), np.empty(0, np.float32))

    def purchased(self) -> np.ndarray:
        return np.unique(self.items[self.types == PURCHASE])

    def row(self, n_items: int, weights: np.ndarray) -> sp.csr_matrix:
        """1 x n_items weighted interaction row (per-type weights, summed per item)."""
        w = weights[self.types].astype(np.float32)
        row = sp.csr_matrix((w, (np.zeros(len(self.items), np.int32), self.items)),
                            shape=(1, n_items), dtype=np.float32)
        row.sum_duplicates()
        return row


def to_seconds(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(ts).as_unit("s").asi8, dtype=np.int64)


class HistoryIndex:
    """All users' histories as flat arrays; users keyed by external id.

    >>> # idx = HistoryIndex.from_events(events, item_map); idx.slice("u1", before=t)
    """

    def __init__(self, users: IdMap, offsets: np.ndarray, items: np.ndarray, types: np.ndarray,
                 times: np.ndarray, quantity: np.ndarray, price: np.ndarray) -> None:
        self.users = users
        self.offsets = offsets
        self.items = items
        self.types = types
        self.times = times
        self.quantity = quantity
        self.price = price

    @classmethod
    def from_events(cls, events: pd.DataFrame, items: IdMap) -> HistoryIndex:
        """Build from canonical events; events of items outside ``items`` are skipped."""
        item_idx = items.to_internal(events[C.ITEM_ID], missing="minus_one")
        keep = item_idx >= 0
        frame = events.loc[keep]
        users = IdMap.from_values(frame[C.USER_ID])
        user_idx = users.to_internal(frame[C.USER_ID])
        times = to_seconds(frame[C.TIMESTAMP])
        order = np.lexsort((times, user_idx))
        counts = np.bincount(user_idx, minlength=len(users))
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        types = pd.Categorical(frame[C.EVENT_TYPE], categories=list(C.EVENT_TYPES)).codes
        price = frame[C.PRICE].to_numpy(dtype=np.float32) if C.PRICE in frame else np.full(
            len(frame), np.nan, np.float32)
        return cls(users, offsets, item_idx[keep][order].astype(np.int32),
                   types[order].astype(np.int8), times[order],
                   frame[C.QUANTITY].to_numpy(dtype=np.int32)[order], price[order])

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.users

    def slice(self, user_id: str | None, before: int | None = None) -> UserEvents:
        """The user's events strictly before ``before`` (epoch seconds); all when None."""
        if user_id is None or user_id not in self.users:
            return UserEvents.empty()
        u = int(self.users.to_internal([user_id])[0])
        lo, hi = int(self.offsets[u]), int(self.offsets[u + 1])
        if before is not None:
            hi = lo + int(np.searchsorted(self.times[lo:hi], before, side="left"))
        s = slice(lo, hi)
        return UserEvents(self.items[s], self.types[s], self.times[s], self.quantity[s],
                          self.price[s])

    def without_user(self, user_id: str) -> HistoryIndex:
        """A copy with ``user_id``'s events removed (privacy erasure). The original is left
        untouched, so requests reading it concurrently are never half-way through a change;
        the caller swaps the reference. The user keeps an (empty) slot in the id map."""
        if user_id not in self.users:
            return self
        u = int(self.users.to_internal([user_id])[0])
        lo, hi = int(self.offsets[u]), int(self.offsets[u + 1])
        keep = np.ones(len(self.items), dtype=bool)
        keep[lo:hi] = False
        offsets = self.offsets.copy()
        offsets[u + 1:] -= hi - lo
        return HistoryIndex(self.users, offsets, self.items[keep], self.types[keep],
                            self.times[keep], self.quantity[keep], self.price[keep])

    def sample_users(self, n: int) -> list[str]:
        """Up to ``n`` users with events (warm-up requests, examples)."""
        has = np.flatnonzero(np.diff(self.offsets) > 0)[:n]
        return [str(u) for u in self.users.external_ids[has]]

    def save(self, directory: Path) -> list[str]:
        arrays = {**self.users.to_arrays("user"), "offsets": self.offsets, "items": self.items,
                  "types": self.types, "times": self.times, "quantity": self.quantity,
                  "price": self.price}
        return [write_arrays(directory, KIND, arrays),
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                           users=len(self.users), events=len(self.items))]

    @classmethod
    def load(cls, directory: Path) -> HistoryIndex:
        read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        z = read_arrays(directory, KIND, ("user_ids", "offsets", "items", "types", "times",
                                          "quantity", "price"))
        return cls(IdMap.from_arrays(z, "user"), z["offsets"], z["items"], z["types"],
                   z["times"], z["quantity"], z["price"])
