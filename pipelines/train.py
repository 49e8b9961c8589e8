"""``recsys train``: fit the hybrid on a dataset directory and write a bundle.

What is fitted on which events is :meth:`recsys.recommender.HybridRecommender.fit`'s business;
this command adds the console output, the bundle directory and the engine that validates the
events: pandas (in this process) or Spark (``--engine spark``: validation and deduplication on
Spark, then the fit here on the canonical events; docs/scaling.md says what that covers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.config import TrainConfig
from recsys.recommender import HybridRecommender

if TYPE_CHECKING:
    from recsys.data.prepare import Engine
    from recsys.data.spark.session import SparkSettings


def train(data_dir: str | Path, out: str | Path, config: TrainConfig | None = None, *,
          quiet: bool = False, engine: Engine = "pandas",
          spark: SparkSettings | None = None, workers: int | None = None) -> HybridRecommender:
    """Fit every part on ``data_dir`` and write a bundle to ``out``; returns the recommender
    (its ``manifest`` is the bundle's). ``engine="spark"`` validates the events on Spark
    (``spark``: the session's settings, default ``local[2]``). ``workers``: processes the fit
    uses at most (default: every core)."""
    log = None if quiet else (lambda message: print(message, flush=True))
    if engine == "pandas":
        rec = HybridRecommender.fit(data_dir, config, progress=not quiet, log=log,
                                    workers=workers)
    else:
        rec = _fit_on_engine(data_dir, config, engine, spark, quiet=quiet, log=log,
                             workers=workers)
    manifest = rec.save(out)
    if not quiet:
        print(f"bundle {manifest.version} -> {out} ({manifest.timings_seconds['total']:.1f}s)",
              flush=True)
    return rec


def _fit_on_engine(data_dir: str | Path, config: TrainConfig | None, engine: Engine,
                   spark: SparkSettings | None, *, quiet: bool,
                   log: Callable[[str], None] | None, workers: int | None) -> HybridRecommender:
    import time

    from recsys.data.io import find_table
    from recsys.data.prepare import validated_dataset
    from recsys.manifest import fingerprint_files

    started = time.perf_counter()
    with _own_session(engine):
        dataset = validated_dataset(data_dir, engine=engine, spark=spark)
    seconds = round(time.perf_counter() - started, 2)
    if log is not None:
        log(f"validated on {engine} in {seconds:.1f}s: {dataset.report.events_out:,} events")
    rec = HybridRecommender.fit(dataset, config, progress=not quiet, log=log, workers=workers)
    assert rec.report is not None
    # the bundle names the files, as a pandas-engine fit does, not "(in memory)"
    files = [find_table(data_dir, "events"), find_table(data_dir, "items")]
    data = rec.report.data.model_copy(update={"path": str(data_dir),
                                              "fingerprint": fingerprint_files(files)})
    timings = {**rec.report.timings_seconds, f"validate_{engine}": seconds}
    timings["total"] = round(timings["total"] + seconds, 2)
    rec.report = rec.report.model_copy(update={"data": data, "timings_seconds": timings})
    return rec


@contextmanager
def _own_session(engine: str) -> Iterator[None]:
    """Stop the Spark session after validation when this command started it: the fit does not
    need the JVM (and its heap) any more. A session already running is left to its owner."""
    if engine != "spark":
        yield
        return
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    try:
        yield
    finally:
        session = SparkSession.getActiveSession()
        if running is None and session is not None:
            session.stop()
