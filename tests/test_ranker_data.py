"""Ranker training sets on hand-made windows: horizon queries at the window's start, session
queries with context, labels graded by the deepest event, one set per surface."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.ranker_data import _prepared, build_datasets, horizon_queries, session_queries
from tests.world import NOW, World

START = int(NOW.timestamp())


def window(*rows: tuple[str, str, str, str, int]) -> pd.DataFrame:
    """(session, user, item, event type, minutes after NOW)."""
    return pd.DataFrame({
        C.SESSION_ID: [r[0] for r in rows], C.USER_ID: [r[1] for r in rows],
        C.ITEM_ID: [r[2] for r in rows], C.EVENT_TYPE: [r[3] for r in rows],
        C.TIMESTAMP: [NOW + pd.Timedelta(minutes=r[4]) for r in rows],
        C.DEVICE: "mobile", C.QUANTITY: 1})


HORIZON = window(("s2", "u3", "g1", C.VIEW, 0), ("s2", "u3", "g1", C.PURCHASE, 0),
                 ("s3", "u2", "k3", C.VIEW, 5),
                 ("s4", "u1", "k0", C.PURCHASE, 9),          # u1 bought k0 before: a repeat
                 ("s9", "newbie", "k1", C.PURCHASE, 1))      # no history: not asked


def test_horizon_queries_ask_every_shopper_with_history(world: World) -> None:
    w = _prepared(HORIZON, world.hybrid())
    queries = horizon_queries(w, [START], world.history)
    assert [q.user_id for q in queries] == ["u1", "u2", "u3"]
    labels = {q.user_id: dict(zip(world.catalog.items.to_external(q.items), q.grades.tolist(),
                                  strict=True)) for q in queries}
    assert labels == {"u1": {"k0": 4}, "u2": {"k3": 1}, "u3": {"g1": 4}}  # deepest event wins
    later = horizon_queries(w, [START + 6 * 60], world.history)        # asked 6 minutes in
    assert [q.user_id for q in later] == ["u1"]


def test_each_surface_learns_from_its_own_candidates(world: World) -> None:
    rec = world.hybrid()
    sets = build_datasets(rec, HORIZON, world.history, start=START, max_queries=10, seed=0)
    kept = {s: sorted(d.queries["user_id"]) for s, d in sets.items()}
    # for_you: everyone; buy_again: only u1's repeat of k0 is a positive among bought items;
    # discover: u2 and u3 bought or viewed items new to them (u1's k0 is not new)
    assert kept == {"for_you": ["u1", "u2", "u3"], "buy_again": ["u1"],
                    "discover": ["u2", "u3"]}
    assert sets["buy_again"].skipped_no_positive == 2
    assert sorted(sets["for_you"].labels[sets["for_you"].labels > 0].tolist()) == [1, 4, 4]
    for d in sets.values():
        assert d.features.shape == (int(d.groups.sum()), len(rec.features.names))
    # point in time: u3's purchase of g1 is a label, not history (times_bought stays 0)
    discover = sets["discover"]
    rows = np.repeat(discover.queries["user_id"].to_numpy(), discover.groups) == "u3"
    assert (discover.features[rows, rec.features.column["times_bought"]] == 0).all()


def test_grades_come_from_the_config(world: World) -> None:
    rec = world.hybrid()
    grades = rec.config.ranker.model_copy(update={"grades": {C.VIEW: 2, C.PURCHASE: 3}})
    rec.config = rec.config.model_copy(update={"ranker": grades})
    sets = build_datasets(rec, HORIZON, world.history, start=START, max_queries=10, seed=0)
    assert sorted(sets["for_you"].labels[sets["for_you"].labels > 0].tolist()) == [2, 3, 3]


def test_session_queries_carry_the_session_so_far(world: World) -> None:
    rows = [("s5", "u4", "g2", C.VIEW, 20), ("s5", "u4", "g2", C.CLICK, 21),
            ("s5", "u4", "g3", C.ADD_TO_CART, 22), ("s5", "u4", "g3", C.PURCHASE, 23),
            ("s6", "u5", "k1", C.VIEW, 30)]                # one moment: no session query
    w = _prepared(window(*rows), world.hybrid())
    queries = session_queries(w, np.random.default_rng(0), context_views=20)
    assert len(queries) == 1 and queries[0].kind == "session" and queries[0].user_id == "u4"
    q = queries[0]
    minute = (q.t - START) // 60
    assert minute in (21, 22, 23)
    g2, g3 = world.ids("g2", "g3").tolist()
    assert q.views == ((g2,) if minute == 21 else (g2, g2))
    assert q.cart == ((g3,) if minute == 23 else ())
    assert dict(zip(q.items.tolist(), q.grades.tolist(), strict=True))[g3] == 4
