"""Items bought together: cosine-normalised co-occurrence within baskets, top-N per item.

A basket is a session (``session_id``; an invoice in Online Retail) or, without one, a user-day.
Only events of the configured types count (default: carts and purchases), so "bought together"
means what it says. Baskets larger than ``max_basket`` are truncated to their first items: a
500-line wholesale invoice would otherwise add 250k pairs that say little about any one pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.neighbours import spread
from recsys.persist import read_csr, read_meta, write_csr, write_meta

KIND = "copurchase"
FORMAT_VERSION = 1


class CoPurchaseConfig(StrictModel):
    event_types: tuple[str, ...] = (C.ADD_TO_CART, C.PURCHASE)
    neighbours: int = Field(50, ge=1)   # kept per item; candidates need only the head
    max_basket: int = Field(100, ge=2)
    min_count: int = Field(1, ge=1)     # pairs seen fewer times are noise


class CoPurchase:
    """``neighbours_``: items x items CSR, row i = items bought with i, values = cosine."""

    def __init__(self, config: CoPurchaseConfig | None = None) -> None:
        self.config = config or CoPurchaseConfig()
        self.neighbours_: sp.csr_matrix | None = None

    def fit(self, events: pd.DataFrame, n_items: int) -> CoPurchase:
        """``events`` carry ``item_idx`` (internal) and ``user_idx`` columns."""
        frame = events[events[C.EVENT_TYPE].astype(str).isin(self.config.event_types)]
        if C.SESSION_ID in frame and frame[C.SESSION_ID].notna().any():
            key = frame[C.SESSION_ID].astype(str).where(frame[C.SESSION_ID].notna(),
                                                        "u" + frame["user_idx"].astype(str))
        else:
            key = frame["user_idx"].astype(str) + "@" + frame[C.TIMESTAMP].dt.strftime("%Y%m%d")
        pairs = pd.DataFrame({"b": pd.factorize(key)[0], "i": frame["item_idx"].to_numpy()})
        pairs = pairs.drop_duplicates()
        pairs = pairs[pairs.groupby("b").cumcount() < self.config.max_basket]
        n_b = int(pairs["b"].max()) + 1 if len(pairs) else 0
        baskets = sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs["b"], pairs["i"])),
                                shape=(n_b, n_items))
        co = (baskets.T @ baskets).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        if self.config.min_count > 1:
            co.data[co.data < self.config.min_count] = 0
            co.eliminate_zeros()
        counts = np.asarray(baskets.sum(axis=0)).ravel()
        norm = np.sqrt(np.maximum(counts, 1.0))
        co = sp.diags(1.0 / norm) @ co @ sp.diags(1.0 / norm)
        self.neighbours_ = top_n_per_row(co.tocsr().astype(np.float32), self.config.neighbours)
        return self

    def scores_for(self, items: np.ndarray, weights: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates bought with any of ``items``: (candidate ids, summed score, the source item
        that contributed most, for the explanation)."""
        assert self.neighbours_ is not None
        return spread(self.neighbours_, items, weights)

    def save(self, directory: Path) -> list[str]:
        assert self.neighbours_ is not None
        return [write_csr(directory, KIND, self.neighbours_),
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                           pairs=int(self.neighbours_.nnz))]

    @classmethod
    def load(cls, directory: Path, config: CoPurchaseConfig | None = None) -> CoPurchase:
        read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        model = cls(config)
        model.neighbours_ = read_csr(directory, KIND)
        return model


def top_n_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row (vectorised over rows)."""
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    if lengths.max(initial=0) <= n:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    # order entries by (row, -value); keep the first n of each row
    order = np.lexsort((-matrix.data, rows))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    keep = order[rank < n]
    keep.sort()
    out = sp.csr_matrix((matrix.data[keep], matrix.indices[keep],
                         np.r_[0, np.cumsum(np.minimum(lengths, n))]), shape=matrix.shape)
    return out
