"""A tiny hand-made shop for unit tests of sources, features, rules and reasons.

Eight items in two categories (``k*`` kitchen, ``g*`` garden); shoppers with known histories:

* ``u1`` bought k0 three times (days 1, 10, 20) and k1 once (day 25), viewed g0;
* ``u2`` bought k0, k1 and k2 together in one basket (day 5; 50 units of k2), g0 and g1 in
  another (day 6);
* ``u3`` viewed garden items only; ``u4``..``u9`` buy k0 and g0 (k0 is the most popular).

Everything is fitted for real (popularity, a small ALS, a one-epoch content model, FAISS), so
unit tests call the same code as production on inputs small enough to check by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.catalog import Catalog
from recsys.config import HybridConfig
from recsys.context import Context, Query
from recsys.data.training import prepare_training
from recsys.data.validate import validate_events, validate_items
from recsys.fit import build_spaces
from recsys.history import HistoryIndex, UserEvents
from recsys.models.base import TrainingData
from recsys.models.content import ContentConfig, ContentModel
from recsys.models.mf import MFConfig, MFModel
from recsys.models.popularity import PopularityConfig, PopularityModel
from recsys.purchases import RepeatStats
from recsys.recommender import HybridRecommender
from recsys.retrieval import RetrievalConfig
from recsys.sources import build_sources
from recsys.sources.base import Parts

DAY0 = pd.Timestamp("2024-01-01T00:00:00Z")
NOW = DAY0 + pd.Timedelta(days=30)
ITEMS = ["k0", "k1", "k2", "k3", "g0", "g1", "g2", "g3"]
WEIGHTS = np.array([1.0, 2.0, 4.0, 8.0], np.float32)     # view, click, cart, purchase
PRICES = dict(zip(ITEMS, [10.0, 20.0, 3.0, 5.0, 15.0, 12.0, 4.0, 2.0], strict=True))


def items_table() -> pd.DataFrame:
    return validate_items(pd.DataFrame({
        C.ITEM_ID: ITEMS,
        C.TITLE: ["steel pan", "steel pot", "wooden spoon", "glass jar",
                  "garden hose", "garden rake", "flower pot", "seed tray"],
        C.CATEGORY: ["kitchen"] * 4 + ["garden"] * 4,
        C.BRAND: ["acme", "acme", "oak", None, "green", "green", None, "green"],
        C.PRICE: [PRICES[i] for i in ITEMS],
    }))


def events_table() -> pd.DataFrame:
    rows = []

    def add(user: str, item: str, day: float, kind: str = C.PURCHASE, basket: str = "",
            quantity: int = 1) -> None:
        rows.append((user, item, DAY0 + pd.Timedelta(days=day), kind, basket or f"{user}-{day}",
                     quantity, PRICES[item] if kind == C.PURCHASE else None))

    for day in (1, 10, 20):
        add("u1", "k0", day)
    add("u1", "k1", 25)
    add("u1", "g0", 26, C.VIEW)
    for item in ("k0", "k1", "k2"):
        add("u2", item, 5, basket="b5", quantity=50 if item == "k2" else 1)
    for item in ("g0", "g1"):
        add("u2", item, 6, basket="b6")
    for item, day in (("g0", 2), ("g2", 3), ("g3", 4)):
        add("u3", item, day, C.VIEW)
    for n in range(4, 10):
        add(f"u{n}", "k0", n, basket=f"c{n}")
        add(f"u{n}", "g0", n, basket=f"c{n}")
    return pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE,
                                       C.SESSION_ID, C.QUANTITY, C.PRICE])


@dataclass
class World:
    catalog: Catalog
    events: pd.DataFrame
    training: TrainingData
    history: HistoryIndex
    parts: Parts

    def ids(self, *external: str) -> np.ndarray:
        return self.catalog.items.to_internal(list(external))

    def context(self, user: str | None = None, *, cart: tuple[str, ...] = (),
                views: tuple[str, ...] = (), now: pd.Timestamp | None = NOW) -> Context:
        history = self.history.slice(user) if user else UserEvents.empty()
        row = int(self.training.users.to_internal([user], missing="minus_one")[0]) \
            if user else -1
        return Context(None if now is None else int(now.timestamp()), "mobile",
                       self.ids(*cart) if cart else np.empty(0, np.int64), np.empty(0, np.int64),
                       self.ids(*views) if views else np.empty(0, np.int64), history, row,
                       len(history) > 0)

    def hybrid(self, config: HybridConfig | None = None) -> HybridRecommender:
        """A hybrid over this world's parts (sources fitted, no ranker: rank fusion)."""
        config = config or HybridConfig()
        sources = build_sources(config.enabled_sources, config.sources, self.parts)
        for source in sources.values():
            source.fit(self.training)
        return HybridRecommender(parts=self.parts, history=self.history,
                                 users=self.training.users, type_weights=WEIGHTS,
                                 sources=sources, config=config)

    def query(self, ctx: Context, mask: np.ndarray | None = None) -> Query:
        if mask is None:
            mask = np.ones(len(self.catalog), dtype=bool)
        return Query(ctx, mask, WEIGHTS)


def build_world(popularity: PopularityConfig | None = None) -> World:
    items = items_table()
    events, _ = validate_events(events_table(), items, now=NOW)
    training = prepare_training(events, items)
    catalog = Catalog(training.item_table)
    pop = PopularityModel(popularity or PopularityConfig()).fit(training)
    mf = MFModel(MFConfig(factors=4, iterations=5, seed=0)).fit(training)
    content = ContentModel(ContentConfig(epochs=1, dim=8, batch_size=8, progress=False,
                                         min_token_count=1)).fit(training)
    spaces = build_spaces(mf, content, training, RetrievalConfig())
    history = HistoryIndex.from_events(events, training.items)
    repeat = RepeatStats.fit(training.events, len(training.items))
    return World(catalog, events, training, history, Parts(catalog, pop, spaces, repeat))
