"""``recsys recommend``: batch top-k lists for a file of users, through the serving code."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from tqdm import tqdm

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


def recommend_batch(bundle: str | Path, users_file: str | Path, out: str | Path, *, k: int = 10,
                    at: str | None = None, surface: str = "for_you",
                    progress: bool = True) -> int:
    """Write ``user_id, rank, item_id, score`` rows; returns the number of rows written."""
    if not 1 <= k <= 100:
        raise DataError(f"--k {k} (expected 1..100)")
    if surface not in SURFACES:
        raise DataError(f"--surface {surface!r} (expected one of {', '.join(SURFACES)})")
    set_thread_policy("serve")
    rec = HybridRecommender.load(bundle)
    timestamp = None
    if at is not None:
        try:
            timestamp = pd.Timestamp(at)
        except ValueError:
            raise DataError(f"--at {at!r}: not a timestamp (expected ISO 8601)") from None
        timestamp = timestamp.tz_localize("UTC") if timestamp.tzinfo is None else timestamp
    users = read_users(users_file)
    rows = 0
    with Path(out).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "rank", "item_id", "score"])
        for user in tqdm(users, disable=not progress, desc="recommend", mininterval=2.0):
            response = rec.recommend(Request(user_id=user, timestamp=timestamp, k=k,
                                             surface=surface), explain=False)
            for item in response.items:
                writer.writerow([user, item.rank, item.item_id, f"{item.score:.6f}"])
                rows += 1
    return rows
