"""``recsys recommend``: batch top-k lists for a file of users, through the serving code.

The shoppers are scored in chunks on every core (:mod:`recsys.batch`: one single-threaded
worker process per core, forked with the loaded bundle); the file is the same whatever
``workers`` is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.batch import Progress, check_workers, map_chunks
from recsys.errors import DataError
from recsys.recommender import SURFACES, HybridRecommender, Request
from recsys.threads import set_thread_policy


def read_users(path: str | Path) -> list[str]:
    """One user id per line (a header line ``user_id`` is skipped); blank lines ignored."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: users file not found")
    users = [line.strip().split(",")[0] for line in path.read_text().splitlines()]
    users = [u for u in users if u]
    if users and users[0] == "user_id":
        users = users[1:]
    if not users:
        raise DataError(f"{path}: no user ids (expected one id per line)")
    return users


@dataclass(frozen=True)
class Ask:
    """What every shopper of the batch is asked (the workers inherit it with the bundle)."""

    rec: HybridRecommender
    timestamp: pd.Timestamp | None
    k: int
    surface: str


def csv_rows(ask: Ask, users: Sequence[str]) -> tuple[str, int]:
    """The CSV text of ``users``' lists and its number of rows (run in a worker: text is the
    cheapest thing to send back)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    rows = 0
    for user in users:
        response = ask.rec.recommend(Request(user_id=user, timestamp=ask.timestamp, k=ask.k,
                                             surface=ask.surface), explain=False)
        for item in response.items:
            writer.writerow([user, item.rank, item.item_id, f"{item.score:.6f}"])
        rows += len(response.items)
    return buffer.getvalue(), rows


def recommend_batch(bundle: str | Path, users_file: str | Path, out: str | Path, *, k: int = 10,
                    at: str | None = None, surface: str = "for_you", workers: int | None = 1,
                    progress: bool = False) -> int:
    """Write ``user_id, rank, item_id, score`` rows; returns the number of rows written.

    ``workers``: processes scoring in parallel (None: every core); ``progress``: a progress
    line on stderr (:class:`recsys.batch.Progress`).
    """
    if not 1 <= k <= 100:
        raise DataError(f"--k {k} (expected 1..100)")
    if surface not in SURFACES:
        raise DataError(f"--surface {surface!r} (expected one of {', '.join(SURFACES)})")
    workers = check_workers(workers)
    timestamp = None
    if at is not None:
        try:
            timestamp = pd.Timestamp(at)
        except ValueError:
            raise DataError(f"--at {at!r}: not a timestamp (expected ISO 8601)") from None
        timestamp = timestamp.tz_localize("UTC") if timestamp.tzinfo is None else timestamp
    users = read_users(users_file)
    set_thread_policy("serve")
    ask = Ask(HybridRecommender.load(bundle), timestamp, k, surface)
    bar = Progress(len(users), "recommend") if progress else None
    rows = 0
    with Path(out).open("w", newline="") as fh:
        csv.writer(fh).writerow(["user_id", "rank", "item_id", "score"])
        for text, n in map_chunks(csv_rows, users, state=ask, workers=workers, progress=bar):
            fh.write(text)
            rows += n
    if bar is not None:
        bar.close()
    return rows
