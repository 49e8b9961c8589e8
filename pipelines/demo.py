"""``recsys demo``: the main job on the built-in synthetic shop, end to end.

generate -> validate -> split -> train (popularity, ALS, content model, ranker) -> bundle.
Later steps are added here as they land, so the README's first command always runs the whole
product.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.prepare import print_lines, split_dir, validate_dir
from recsys.data.split import summary_lines


def _step(n: int, total: int, what: str) -> float:
    print(f"[{n}/{total}] {what}", flush=True)
    return time.perf_counter()


def run_demo(out: Path, *, users: int = 3000, items: int = 1500, days: int = 60,
             seed: int = 42) -> None:
    from recsys.data.synthetic import ShopConfig, generate_shop

    total = 4
    data_dir = out / "data"
    t = _step(1, total, f"generating the synthetic shop ({users:,} users, {items:,} items, "
                        f"{days} days, seed {seed}) -> {data_dir}")
    shop = generate_shop(ShopConfig(users=users, items=items, days=days, seed=seed))
    shop.save(data_dir)
    print(f"      {len(shop.events):,} events in {time.perf_counter() - t:.1f}s")

    t = _step(2, total, "validating")
    dataset = validate_dir(data_dir)
    print_lines(["      " + line for line in dataset.report.lines()])

    t = _step(3, total, "splitting by time (70/15/15)")
    summary = split_dir(data_dir, dataset=dataset)
    print_lines(["      " + line for line in summary_lines(summary)])

    from pipelines.train import train

    bundle_dir = out / "bundle"
    _step(4, total, f"training -> {bundle_dir}")
    result = train(data_dir, bundle_dir)
    print(f"done: data in {data_dir}, bundle {result.manifest['version']} in {bundle_dir}")
