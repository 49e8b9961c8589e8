"""Tiny fixtures where the right answer is known, shared by every model's tests.

* :func:`checkerboard`: implicit's classic. User ``u`` buys item ``i`` when ``u + i`` is even;
  the diagonal ``u == i`` (always in the pattern) is held out, so a model that learned the
  pattern ranks each user's diagonal item first among the items they have not bought. Items
  carry a category (``even``/``odd``) and parity words in title/description/brand, so a content
  model can learn the same pattern from text.
* :func:`popularity_ladder`: item ``j`` is bought by ``2 * (n_items - j)`` users (user ``u`` buys
  ``j`` iff ``u < 2 * (n_items - j)``), so the most popular unseen item is known for everyone.

Both return a :class:`ContractCase`, which :mod:`tests.models.contract` consumes. The builders
go through ``validate_items`` / ``validate_events`` / ``prepare_training``, so the fixtures have
exactly the dtypes and id maps the pipelines produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import columns as C
from recsys.data.training import prepare_training
from recsys.data.validate import validate_events, validate_items
from recsys.models.base import TrainingData, ValidationData, make_validation

NOW = pd.Timestamp("2024-06-01T00:00:00Z")
START = pd.Timestamp("2024-05-01T00:00:00Z")


@dataclass(frozen=True)
class ContractCase:
    """A training set plus the users to query and what each must get in their top ``k``.

    ``user_items`` holds one history row per entry of ``userids`` (what ``recommend`` filters);
    ``expected[r]`` lists items that should all be in the top ``k`` of user ``userids[r]``; at
    least ``min_hit_rate`` of those (user, item) pairs must be found.
    """

    data: TrainingData
    valid: ValidationData | None
    userids: np.ndarray
    user_items: sp.csr_matrix
    expected: list[np.ndarray]
    k: int = 1
    min_hit_rate: float = 1.0


def build_training(events: pd.DataFrame, items: pd.DataFrame) -> TrainingData:
    """Validate raw frames (canonical dtypes) and turn them into TrainingData."""
    item_table = validate_items(items)
    canonical, _ = validate_events(events, item_table, now=NOW)
    return prepare_training(canonical, item_table)


def _events(triples: list[tuple[str, str, pd.Timestamp]], event_type: str) -> pd.DataFrame:
    return pd.DataFrame({C.USER_ID: [t[0] for t in triples], C.ITEM_ID: [t[1] for t in triples],
                         C.TIMESTAMP: [t[2] for t in triples], C.EVENT_TYPE: event_type,
                         C.QUANTITY: 1})


def checkerboard_items(n_items: int = 50) -> pd.DataFrame:
    """Catalog whose category, brand and words follow item parity."""
    even = np.arange(n_items) % 2 == 0
    return pd.DataFrame({
        C.ITEM_ID: [f"i{i:02d}" for i in range(n_items)],
        C.TITLE: np.where(even, "red cotton shirt", "blue steel kettle"),
        C.CATEGORY: np.where(even, "even", "odd"),
        C.BRAND: np.where(even, "acme", "zenith"),
        C.PRICE: 10.0 + np.arange(n_items) % 7,
        C.DESCRIPTION: np.where(even, "soft red fabric for summer", "shiny blue metal for tea"),
    })


def checkerboard(n: int = 50) -> ContractCase:
    """n users x n items, (u + i) even = bought, diagonal held out as the validation target."""
    train, heldout = [], []
    for u in range(n):
        for i in range(n):
            if (u + i) % 2:
                continue
            when = START + pd.Timedelta(minutes=u * n + i)
            (heldout if u == i else train).append((f"u{u:02d}", f"i{i:02d}", when))
    items = checkerboard_items(n)
    data = build_training(_events(train, C.PURCHASE), items)
    held = _events([(u, i, t + pd.Timedelta(days=10)) for u, i, t in heldout], C.PURCHASE)
    valid = make_validation(data, held, max_users=None)
    userids = data.users.to_internal([f"u{u:02d}" for u in range(n)])
    expected = [data.items.to_internal([f"i{u:02d}"]) for u in range(n)]
    return ContractCase(data, valid, userids, data.matrix[userids], expected, k=1)


def popularity_ladder(n_users: int = 20, n_items: int = 10) -> ContractCase:
    """Item j has 2 * (n_items - j) buyers; categories ``a`` (first half) and ``b``.

    Users 0 and 1 have bought everything, so only users 2.. are queried; for each, the expected
    item is the most popular one they have not bought (it is in the same category as their
    history or follows it in popularity, so all popularity modes agree).
    """
    triples = []
    for j in range(n_items):
        for u in range(min(n_users, 2 * (n_items - j))):
            triples.append((f"u{u:02d}", f"i{j:02d}", START + pd.Timedelta(seconds=u * 60 + j)))
    items = pd.DataFrame({
        C.ITEM_ID: [f"i{j:02d}" for j in range(n_items)],
        C.TITLE: [f"item number {j}" for j in range(n_items)],
        C.CATEGORY: ["a" if j < n_items // 2 else "b" for j in range(n_items)],
        C.PRICE: 5.0,
    })
    data = build_training(_events(triples, C.PURCHASE), items)
    users = list(range(2, n_users))
    userids = data.users.to_internal([f"u{u:02d}" for u in users])
    seen = data.matrix[userids]
    expected = []
    for r in range(len(users)):
        unseen = np.setdiff1d(np.arange(n_items), seen[r].indices)
        best = min(unseen, key=lambda j: int(data.items.external_ids[j][1:]))
        expected.append(np.array([best]))
    return ContractCase(data, None, userids, seen, expected, k=1)


@pytest.fixture
def checkerboard_case() -> ContractCase:
    return checkerboard()


@pytest.fixture
def ladder_case() -> ContractCase:
    return popularity_ladder()
