"""``recsys events export``: the store's events as a dataset, and a plain warning that the
copy is outside erasure's reach."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from serving.event_store import SQLiteEventStore


def test_export_says_it_is_outside_erasure(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    db = tmp_path / "events.db"
    with SQLiteEventStore(db) as store:
        store.add_events([{"event_id": f"e{n}", "user_id": "u1", "item_id": "i1",
                           "event_type": "view", "timestamp": "2026-01-01T00:00:00Z"}
                          for n in range(3)])
    assert main(["events", "export", "--store", str(db), "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "exported 3 events" in out and "does not reach it" in out
    assert len(pd.read_parquet(tmp_path / "x" / "events.parquet")) == 3
    assert main(["events", "export", "--store", str(tmp_path / "nope.db"), "--out",
                 str(tmp_path / "y")]) == 2
