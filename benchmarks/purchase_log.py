"""A repeat-heavy purchase log at a chosen scale, for training benchmarks (JSON-free helper).

Shaped like a wholesale shop's invoices (UCI Online Retail): shoppers with log-normal
activity place baskets of 5-40 lines over a year; each line re-buys one of the shopper's
earlier items with a shopper-specific probability (mean 0.45), else picks a new item from a
log-normal popularity, mostly within the shopper's two favourite categories. Only purchases, with a
quantity and a price; the catalog has titles from a small vocabulary, a category and a price.

    python benchmarks/purchase_log.py --out /tmp/log1m --events 1000000 --items 25000 \\
        --shoppers 30000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

WORDS = ("red white blue green pink heart star vintage glass wooden metal paper set of "
         "mug cup bowl plate bag box tin card candle light lamp frame sign clock jar "
         "christmas garden kitchen party baby retro spot stripe small large").split()


def generate(out: Path, *, events: int, items: int, shoppers: int, categories: int = 40,
             days: int = 365, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, categories, items)
    pop = rng.lognormal(0.0, 1.6, items)          # a long tail, no item with half the sales
    activity = rng.lognormal(0.0, 1.0, shoppers)   # most shoppers order a few times a year
    repeat = rng.beta(2.2, 2.7, shoppers)                      # mean ~0.45
    favourite = rng.integers(0, categories, (shoppers, 2))
    by_cat = [np.flatnonzero(item_cat == c) for c in range(categories)]
    cat_p = [pop[m] / pop[m].sum() for m in by_cat]
    all_p = pop / pop.sum()
    # de-duplicated lines come out ~12% fewer than drawn: draw that many more
    lines_per_basket = 5 + rng.poisson(8, events // 6 + 10)
    n_baskets = int(np.searchsorted(np.cumsum(lines_per_basket), events * 1.14)) + 1
    owner = rng.choice(shoppers, n_baskets, p=activity / activity.sum())
    start = pd.Timestamp("2025-01-01", tz="UTC")
    when = start + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n_baskets)), unit="s")
    bought: dict[int, list[int]] = {}
    u_col, i_col, t_col, s_col = [], [], [], []
    for b in range(n_baskets):
        u = int(owner[b])
        mine = bought.setdefault(u, [])
        n = int(lines_per_basket[b])
        again = rng.random(n) < repeat[u] if mine else np.zeros(n, bool)
        picks = []
        for k in range(n):
            if again[k]:
                picks.append(mine[int(rng.integers(len(mine)))])
            elif rng.random() < 0.7:
                c = int(favourite[u, int(rng.integers(2))])
                picks.append(int(rng.choice(by_cat[c], p=cat_p[c])) if len(by_cat[c])
                             else int(rng.choice(items, p=all_p)))
            else:
                picks.append(int(rng.choice(items, p=all_p)))
        picks = list(dict.fromkeys(picks))
        mine.extend(p for p in picks if p not in mine)
        u_col += [u] * len(picks)
        i_col += picks
        t_col += [when[b]] * len(picks)
        s_col += [b] * len(picks)
    out.mkdir(parents=True, exist_ok=True)
    price = np.round(np.exp(rng.normal(1.2, 0.8, items)), 2)
    pd.DataFrame({"user_id": np.char.add("c", np.array(u_col).astype(str)),
                  "item_id": np.char.add("p", np.array(i_col).astype(str)),
                  "timestamp": t_col, "event_type": "purchase",
                  "quantity": rng.integers(1, 25, len(u_col)),
                  "price": price[np.array(i_col)],
                  "session_id": np.char.add("inv", np.array(s_col).astype(str))}
                 ).to_parquet(out / "events.parquet", index=False)
    titles = [" ".join(rng.choice(WORDS, 4)) for _ in range(items)]
    pd.DataFrame({"item_id": np.char.add("p", np.arange(items).astype(str)), "title": titles,
                  "category": np.char.add("cat", item_cat.astype(str)), "price": price}
                 ).to_parquet(out / "items.parquet", index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=25_000)
    parser.add_argument("--shoppers", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, events=args.events, items=args.items, shoppers=args.shoppers,
             seed=args.seed)


if __name__ == "__main__":
    main()
