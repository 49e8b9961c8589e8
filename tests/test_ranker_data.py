"""Ranker training queries on hand-made sessions: one query per session, point in time, labels
graded by the deepest event, sessions with nothing to learn skipped and counted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.ranker_data import build_dataset, sample_queries
from tests.world import NOW, World


def window(*rows: tuple[str, str, str, str, int]) -> pd.DataFrame:
    """(session, user, item, event type, minutes after NOW)."""
    return pd.DataFrame({
        C.SESSION_ID: [r[0] for r in rows], C.USER_ID: [r[1] for r in rows],
        C.ITEM_ID: [r[2] for r in rows], C.EVENT_TYPE: [r[3] for r in rows],
        C.TIMESTAMP: [NOW + pd.Timedelta(minutes=r[4]) for r in rows],
        C.DEVICE: "mobile", C.QUANTITY: 1})


def test_one_query_per_session_inside_its_span() -> None:
    rows = [(f"s{n}", f"u{n}", "k0", C.VIEW, n * 10 + m) for n in range(40) for m in range(3)]
    w = window(*rows)
    q = sample_queries(w, max_queries=100, seed=0)
    assert sorted(q["key"]) == sorted(w[C.SESSION_ID].unique())
    start = {s: int(NOW.timestamp()) + n * 600 for n, s in enumerate(f"s{n}" for n in range(40))}
    offsets = q["t"].to_numpy() - q["key"].map(start).to_numpy()
    assert set(offsets) <= {0, 60, 120}
    assert 5 < (offsets == 0).sum() < 35       # about half at the session start
    assert q["t"].is_monotonic_increasing
    assert len(sample_queries(w, max_queries=10, seed=0)) == 10
    pd.testing.assert_frame_equal(q, sample_queries(w, max_queries=100, seed=0))


def test_labels_are_graded_by_the_deepest_event(world: World) -> None:
    rec = world.hybrid()
    w = window(("s2", "u3", "g1", C.VIEW, 0), ("s2", "u3", "g1", C.PURCHASE, 0),
               ("s3", "u2", "k3", C.VIEW, 5),
               ("s4", "u1", "k0", C.PURCHASE, 9))     # u1 bought k0 before: not eligible
    ds = build_dataset(rec, w, world.history, max_queries=10, seed=0)
    assert ds.skipped_no_positive == 1
    assert len(ds.groups) == 2 and ds.queries["user_id"].tolist() == ["u3", "u2"]
    assert sorted(ds.labels[ds.labels > 0].tolist()) == [1, 4]   # k3 viewed, g1 bought
    assert ds.features.shape == (int(ds.groups.sum()), len(rec.features.names))
    # point in time: u3's purchase of g1 is a label, not history (times_bought stays 0)
    times_bought = ds.features[:, rec.features.column["times_bought"]]
    assert (times_bought[: ds.groups[0]] == 0).all()
    grades = rec.config.ranker.model_copy(update={"grades": {C.VIEW: 2, C.PURCHASE: 3}})
    rec.config = rec.config.model_copy(update={"ranker": grades})
    regraded = build_dataset(rec, w, world.history, max_queries=10, seed=0)
    assert sorted(regraded.labels[regraded.labels > 0].tolist()) == [2, 3]
    assert np.array_equal(regraded.groups, ds.groups)
