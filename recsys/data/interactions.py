"""Weighted user x item interaction matrix (CSR, float32) from events.

Each event contributes ``weight[event_type] * quantity_factor * decay``; repeated events add up.
``decay = 0.5 ** (age / half_life)`` with age measured back from ``reference_time`` (default:
the last event), so recent behaviour counts more when a half-life is set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.data.idmap import IdMap
from recsys.errors import ConfigError


class InteractionConfig(StrictModel):
    """How much each event type counts. Defaults follow the funnel: a purchase says more about
    taste than a view, but views are far more numerous, so they still carry weight."""

    weights: dict[str, float] = Field(default_factory=lambda: {
        C.VIEW: 1.0, C.CLICK: 2.0, C.ADD_TO_CART: 4.0, C.PURCHASE: 8.0})
    # None = no decay. In days; e.g. 30 halves the weight of a month-old event.
    half_life_days: float | None = Field(None, gt=0)
    # True: purchase weight grows with log1p(quantity), so a wholesale order of 48 counts more
    # than one of 1, but not 48 times more.
    use_quantity: bool = True

    def model_post_init(self, __context: object) -> None:
        unknown = set(self.weights) - set(C.EVENT_TYPES)
        if unknown:
            raise ConfigError(f"interactions.weights: unknown event type(s) {sorted(unknown)} "
                              f"(expected {', '.join(C.EVENT_TYPES)})")
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ConfigError(f"interactions.weights: negative weight(s) {bad} (expected >= 0)")


def event_weights(events: pd.DataFrame, config: InteractionConfig,
                  reference_time: pd.Timestamp | None = None) -> np.ndarray:
    """Per-event weight (float32) as described in the module docstring."""
    table = np.zeros(len(C.EVENT_TYPES), dtype=np.float32)
    for i, t in enumerate(C.EVENT_TYPES):
        table[i] = config.weights.get(t, 0.0)
    codes = pd.Categorical(events[C.EVENT_TYPE], categories=list(C.EVENT_TYPES)).codes
    w = table[codes]
    if config.use_quantity and C.QUANTITY in events:
        w = w * np.log1p(events[C.QUANTITY].to_numpy(dtype=np.float32)) / np.log(2.0)
    if config.half_life_days is not None and len(events):
        ts = events[C.TIMESTAMP]
        ref = ts.max() if reference_time is None else pd.Timestamp(reference_time)
        age_days = (ref - ts).dt.total_seconds().to_numpy() / 86400.0
        w = w * np.power(0.5, np.maximum(age_days, 0.0) / config.half_life_days)
    return np.asarray(w, dtype=np.float32)


def build_matrix(events: pd.DataFrame, users: IdMap, items: IdMap,
                 config: InteractionConfig | None = None,
                 reference_time: pd.Timestamp | None = None) -> sp.csr_matrix:
    """Users x items float32 CSR. Events whose user or item is not in the maps are skipped
    (e.g. a valid-period user when ``users`` covers train only)."""
    config = config or InteractionConfig()
    rows = users.to_internal(events[C.USER_ID], missing="minus_one")
    cols = items.to_internal(events[C.ITEM_ID], missing="minus_one")
    w = event_weights(events, config, reference_time)
    keep = (rows >= 0) & (cols >= 0) & (w > 0)
    matrix = sp.coo_matrix((w[keep], (rows[keep], cols[keep])),
                           shape=(len(users), len(items)), dtype=np.float32).tocsr()
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix
