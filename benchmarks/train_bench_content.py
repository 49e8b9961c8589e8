"""Seconds per epoch of the content model on a synthetic shop; prints JSON.

The catalog has categories with their own words, brands and price levels; each user shops in one
or two categories, items within a category follow a Zipf popularity. Events are split by time
(last 10% held out for the early-stopping metric).

    python benchmarks/train_bench_content.py --users 3000 --items 1500 --events 300000
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.training import prepare_training
from recsys.models.base import make_validation
from recsys.models.content import ContentConfig, ContentModel


def synthetic_shop(n_users: int, n_items: int, n_events: int, n_categories: int = 12,
                   seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items) frames in canonical form, built in a second or two."""
    rng = np.random.default_rng(seed)
    category = rng.integers(0, n_categories, n_items)
    words = [[f"w{c}x{j}" for j in range(30)] for c in range(n_categories)]
    common = [f"common{j}" for j in range(50)]
    titles = [" ".join([*rng.choice(words[c], 3), *rng.choice(common, 2)]) for c in category]
    brand = [None if missing else f"brand{c}_{b}" for c, b, missing in
             zip(category, rng.integers(0, 4, n_items), rng.random(n_items) < 0.2, strict=True)]
    price = np.round(np.exp(rng.normal(1.0 + 0.3 * category, 0.5)), 2)
    items = pd.DataFrame({C.ITEM_ID: [f"i{i}" for i in range(n_items)], C.TITLE: titles,
                          C.CATEGORY: [f"cat{c}" for c in category], C.BRAND: brand,
                          C.PRICE: price, C.DESCRIPTION: ""})
    by_cat = [np.flatnonzero(category == c) for c in range(n_categories)]
    pop = [1.0 / np.arange(1, len(ix) + 1) ** 0.8 for ix in by_cat]
    pop = [p / p.sum() for p in pop]
    prefs = rng.integers(0, n_categories, (n_users, 2))
    user = rng.integers(0, n_users, n_events)
    cat = prefs[user, (rng.random(n_events) < 0.3).astype(int)]
    item = np.empty(n_events, dtype=np.int64)
    for c in range(n_categories):
        rows = np.flatnonzero(cat == c)
        if len(by_cat[c]):
            item[rows] = rng.choice(by_cat[c], len(rows), p=pop[c])
        else:
            item[rows] = rng.integers(0, n_items, len(rows))
    start = pd.Timestamp("2024-01-01", tz="UTC")
    events = pd.DataFrame({
        C.USER_ID: pd.Categorical([f"u{u}" for u in user]),
        C.ITEM_ID: pd.Categorical([f"i{i}" for i in item]),
        C.TIMESTAMP: start + pd.to_timedelta(np.sort(rng.random(n_events)) * 90, unit="D"),
        C.EVENT_TYPE: pd.Categorical(rng.choice([C.VIEW, C.ADD_TO_CART, C.PURCHASE], n_events,
                                                p=[0.8, 0.12, 0.08]), categories=C.EVENT_TYPES),
        C.QUANTITY: np.ones(n_events, dtype=np.int32),
    })
    return events, items


def bench_content(n_users: int = 3000, n_items: int = 1500, n_events: int = 300_000,
                  epochs: int = 3, seed: int = 0) -> dict[str, Any]:
    """Fit ``epochs`` epochs (no early stop) and report seconds per epoch."""
    events, items = synthetic_shop(n_users, n_items, n_events, seed=seed)
    cut = events[C.TIMESTAMP].quantile(0.9)
    data = prepare_training(events[events[C.TIMESTAMP] < cut], items)
    valid = make_validation(data, events[events[C.TIMESTAMP] >= cut])
    config = ContentConfig(epochs=epochs, patience=epochs, progress=False, seed=seed)
    t0 = time.perf_counter()
    model = ContentModel(config).fit(data, valid)
    total = time.perf_counter() - t0
    per_epoch = [h["seconds"] for h in model.history_]
    return {"model": "content", "users": len(data.users), "items": len(data.items),
            "train_events": len(data.events), "epochs": len(per_epoch),
            "seconds_per_epoch": round(float(np.median(per_epoch)), 3),
            "fit_seconds": round(total, 3),
            "valid_recall@20": model.history_[-1]["valid_recall@20"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(bench_content(args.users, args.items, args.events, args.epochs)))


if __name__ == "__main__":
    main()
