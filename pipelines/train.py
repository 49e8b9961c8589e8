"""``recsys train``: fit the hybrid on a dataset directory and write a bundle.

What is fitted on which events is :meth:`recsys.recommender.HybridRecommender.fit`'s business;
this command adds the console output and the bundle directory.
"""

from __future__ import annotations

from pathlib import Path

from recsys.config import TrainConfig
from recsys.recommender import HybridRecommender


def train(data_dir: str | Path, out: str | Path, config: TrainConfig | None = None, *,
          quiet: bool = False) -> HybridRecommender:
    """Fit every part on ``data_dir`` and write a bundle to ``out``; returns the recommender
    (its ``manifest`` is the bundle's)."""
    log = None if quiet else (lambda message: print(message, flush=True))
    rec = HybridRecommender.fit(data_dir, config, progress=not quiet, log=log)
    manifest = rec.save(out)
    if not quiet:
        print(f"bundle {manifest.version} -> {out} ({manifest.timings_seconds['total']:.1f}s)",
              flush=True)
    return rec
