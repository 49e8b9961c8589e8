"""Chronological train/valid/test split by global time cutoffs.

Cutoffs are the timestamps at the ``train`` and ``train + valid`` quantiles of all events:
train is ``t < valid_start``, valid is ``valid_start <= t < test_start``, test is
``t >= test_start``. So no valid or test event precedes a train event, and the same cutoffs
applied to a later export of the same shop give the same split. Events sharing the cutoff
timestamp all go to the later part, so proportions are approximate when many events tie.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, model_validator

from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.errors import ConfigError, DataError


class SplitConfig(StrictModel):
    """Shares of events for train and valid; test gets the rest."""

    train: float = Field(0.70, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _leave_room_for_test(self) -> SplitConfig:
        if self.train + self.valid >= 1:
            raise ConfigError(f"split: train + valid = {self.train + self.valid:g} "
                              f"(expected < 1 so the test part is not empty)")
        return self


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    valid_start: pd.Timestamp
    test_start: pd.Timestamp

    def parts(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


def cutoffs(events: pd.DataFrame, config: SplitConfig | None = None) -> tuple[pd.Timestamp,
                                                                              pd.Timestamp]:
    """The (valid_start, test_start) timestamps for ``events``."""
    config = config or SplitConfig()
    ts = events[C.TIMESTAMP]
    if len(ts) < 3:
        raise DataError(f"split: {len(ts)} events (expected at least 3 to make three parts)")
    ordered = ts.sort_values(ignore_index=True)
    valid_start = ordered.iloc[int(len(ordered) * config.train)]
    test_start = ordered.iloc[int(len(ordered) * (config.train + config.valid))]
    if not ordered.iloc[0] < valid_start < test_start:
        raise DataError(f"split: events span too few distinct times to split "
                        f"({ordered.iloc[0]} .. {ordered.iloc[-1]})")
    return valid_start, test_start


def time_split(events: pd.DataFrame, config: SplitConfig | None = None, *,
               valid_start: pd.Timestamp | None = None,
               test_start: pd.Timestamp | None = None) -> Split:
    """Split ``events`` by global time; cutoffs are computed unless both are given."""
    if valid_start is None or test_start is None:
        valid_start, test_start = cutoffs(events, config)
    ts = events[C.TIMESTAMP]
    train = events.loc[ts < valid_start].reset_index(drop=True)
    valid = events.loc[(ts >= valid_start) & (ts < test_start)].reset_index(drop=True)
    test = events.loc[ts >= test_start].reset_index(drop=True)
    return Split(train, valid, test, pd.Timestamp(valid_start), pd.Timestamp(test_start))


def summarize(split: Split) -> dict[str, Any]:
    """Per part: events by type, users, items, date range, share of cold users and items.

    A user (item) is cold in valid/test when it has no event in train.
    """
    train_users = set(split.train[C.USER_ID].astype(str).unique())
    train_items = set(split.train[C.ITEM_ID].astype(str).unique())
    out: dict[str, Any] = {"valid_start": split.valid_start.isoformat(),
                           "test_start": split.test_start.isoformat(), "parts": {}}
    total = sum(len(p) for p in split.parts().values())
    for name, part in split.parts().items():
        users = part[C.USER_ID].astype(str).unique()
        items = part[C.ITEM_ID].astype(str).unique()
        by_type = part[C.EVENT_TYPE].astype(str).value_counts()
        out["parts"][name] = {
            "events": len(part),
            "share": round(len(part) / total, 4) if total else 0.0,
            "events_by_type": {t: int(by_type.get(t, 0)) for t in C.EVENT_TYPES},
            "users": len(users),
            "items": len(items),
            "start": part[C.TIMESTAMP].min().isoformat() if len(part) else None,
            "end": part[C.TIMESTAMP].max().isoformat() if len(part) else None,
            "cold_user_share": (round(sum(u not in train_users for u in users) / len(users), 4)
                                if len(users) else 0.0),
            "cold_item_share": (round(sum(i not in train_items for i in items) / len(items), 4)
                                if len(items) else 0.0),
        }
    return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"cutoffs: valid from {summary['valid_start']}, test from {summary['test_start']}"]
    for name, p in summary["parts"].items():
        types = ", ".join(f"{t}={n:,}" for t, n in p["events_by_type"].items())
        lines.append(
            f"{name:5s}: {p['events']:,} events ({p['share']:.1%}) [{types}]; "
            f"{p['users']:,} users, {p['items']:,} items; {p['start']} .. {p['end']}; "
            f"cold users {p['cold_user_share']:.1%}, cold items {p['cold_item_share']:.1%}")
    return lines


def save_summary(summary: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")
