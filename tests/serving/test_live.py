"""Live shopper state: accepted events reach the next request (buy_again, the rules, the session
context), bounded memory, a rebuild after a restart, erasure, and the store's event feed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.history import TYPE_CODE
from serving.app import create_app
from serving.event_store import open_store
from serving.live import LiveEvent, LiveState, live_context
from serving.state import ServingState
from tests.serving.conftest import ADMIN_KEY, WRITE_KEY

WRITE = {"X-API-Key": WRITE_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
PURCHASE, VIEW, CART = TYPE_CODE["purchase"], TYPE_CODE["view"], TYPE_CODE["add_to_cart"]


def now_iso(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def event(event_type: str, item_id: str, **unit: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "item_id": item_id, "event_type": event_type,
            "timestamp": now_iso(-1), **unit}


def state_of(client: TestClient) -> ServingState:
    return client.app.state.serving  # type: ignore[attr-defined,no-any-return]


def catalog_ids(client: TestClient) -> list[str]:
    return [str(i) for i in state_of(client).bundles["default"].recommender.items.external_ids]


def served(client: TestClient, **body: Any) -> list[str]:
    r = client.post("/v1/recommendations", json={"k": 50, **body})
    assert r.status_code == 200, r.text
    return [item["item_id"] for item in r.json()["items"]]


def wait_for(check: Any, timeout: float) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not true within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def client(make_settings: Any) -> Iterator[TestClient]:
    # no experiment: every request is the hybrid; the live state polls at its default interval
    with TestClient(create_app(make_settings(experiments=[])), headers=WRITE) as c:
        yield c


# ---------------------------------------------------------------------- purchases
def test_a_purchase_reaches_buy_again_and_leaves_discover_within_a_second(
        client: TestClient) -> None:
    user, item = "u-live-buyer", catalog_ids(client)[7]
    assert item not in served(client, user_id=user, surface="buy_again")
    r = client.post("/v1/events", json={"events": [event("purchase", item, user_id=user)]})
    assert r.status_code == 202, r.text
    took = wait_for(lambda: item in served(client, user_id=user, surface="buy_again"), 1.0)
    assert item not in served(client, user_id=user, surface="discover", k=100)
    assert took < 1.0


def test_a_known_users_live_purchase_joins_their_bundle_history(client: TestClient) -> None:
    rec = state_of(client).bundles["default"].recommender
    user = str(rec.history.users.external_ids[int(np.argmax(np.diff(rec.history.offsets)))])
    bought = set(rec.history.slice(user).purchased().tolist())
    item = next(i for i in catalog_ids(client)
                if int(rec.items.to_internal([i])[0]) not in bought)
    before = served(client, user_id=user, surface="buy_again", k=100)
    client.post("/v1/events", json={"events": [event("purchase", item, user_id=user)]})
    wait_for(lambda: item in served(client, user_id=user, surface="buy_again", k=100), 1.0)
    after = served(client, user_id=user, surface="buy_again", k=100)
    assert set(before) <= set(after)         # the bundle's purchases are still there


# ---------------------------------------------------------------------- session context
def test_views_and_carts_become_the_session_context(client: TestClient) -> None:
    anonymous = served(client, k=20)
    top = anonymous[0]
    session = "s-live-1"
    client.post("/v1/events", json={"events": [event("add_to_cart", top, session_id=session)]})
    # the cart item is never recommended back: the session's cart is the request's cart
    wait_for(lambda: top not in served(client, session_id=session, k=20), 1.0)
    r = client.post("/v1/recommendations", json={"session_id": session, "k": 20})
    assert any("in your cart" in why for item in r.json()["items"] for why in item["reasons"])
    # a context the request sends wins: an empty cart is an empty cart
    assert top in served(client, session_id=session, k=20, context={"cart": []})


def test_a_user_without_a_session_gets_their_recent_views_and_cart() -> None:
    t = 1_700_000_000
    events = [LiveEvent("e1", "a", VIEW, t - 4000, 1, np.nan),      # an older visit
              LiveEvent("e2", "b", VIEW, t - 60, 1, np.nan),
              LiveEvent("e3", "c", CART, t - 50, 1, np.nan),
              LiveEvent("e4", "d", CART, t - 40, 1, np.nan),
              LiveEvent("e5", "d", PURCHASE, t - 30, 1, 5.0),       # bought: out of the cart
              LiveEvent("e6", "b", VIEW, t + 10, 1, np.nan)]        # after the request time
    ctx = live_context(events, since=t - 1800, before=t, max_cart=5, max_views=5)
    assert ctx.cart == ("c",) and ctx.recent_views == ("b",)


# ---------------------------------------------------------------------- bounds
def test_memory_is_bounded_least_recently_used_first() -> None:
    live = LiveState(max_shoppers=2, max_sessions=1, max_events=3)
    for i, user in enumerate(["u1", "u2"]):
        live.add(user, f"s{i}", LiveEvent(f"e{i}", "a", VIEW, i, 1, np.nan))
    assert live.user_events("u1")                   # u1 read: u2 is now the least recent
    live.add("u3", None, LiveEvent("e3", "a", VIEW, 3, 1, np.nan))
    assert live.users() == ["u1", "u3"] and live.sessions == 1
    assert live.session_events("s1") and not live.session_events("s0")
    for j in range(10):
        live.add("u1", None, LiveEvent(f"x{j}", "a", VIEW, 10 + j, 1, np.nan))
    assert [e.event_id for e in live.user_events("u1")] == ["x7", "x8", "x9"]
    assert not live.add("u1", None, LiveEvent("x9", "a", VIEW, 19, 1, np.nan))   # seen


def test_the_app_keeps_at_most_max_shoppers(make_settings: Any) -> None:
    settings = make_settings(experiments=[], live={"max_shoppers": 3, "poll_s": 0.05})
    with TestClient(create_app(settings), headers=WRITE) as c:
        item = catalog_ids(c)[0]
        c.post("/v1/events", json={"events": [event("view", item, user_id=f"u-b{i}")
                                              for i in range(10)]})
        state = state_of(c)
        stored = state.store.event_feed(before=2**62, limit=10)     # newest first
        assert state.live_sync is not None
        sync = state.live_sync
        wait_for(lambda: sync.cursor == stored[0].seq, 1.0)
        # the three stored last are kept (the store orders a batch by event id)
        assert state.live.users() == [r.user_id for r in reversed(stored[:3])]


# ---------------------------------------------------------------------- restart, erasure
def test_the_state_is_rebuilt_from_the_store_after_a_restart(make_settings: Any) -> None:
    settings = make_settings(experiments=[])
    with TestClient(create_app(settings), headers=WRITE) as c:
        item = catalog_ids(c)[3]
        c.post("/v1/events", json={"events": [event("purchase", item, user_id="u-restart")]})
    # restarted without polling: only the rebuild can know the purchase
    again = make_settings(experiments=[], live={"poll_s": 0})
    with TestClient(create_app(again), headers=WRITE) as c:
        assert [e.item_id for e in state_of(c).live.user_events("u-restart")] == [item]
        assert item in served(c, user_id="u-restart", surface="buy_again")


def test_the_rebuild_is_bounded(make_settings: Any) -> None:
    settings = make_settings(experiments=[])
    with TestClient(create_app(settings), headers=WRITE) as c:
        item = catalog_ids(c)[0]
        c.post("/v1/events", json={"events": [event("view", item, user_id=f"u-r{i}")
                                              for i in range(30)]})
    again = make_settings(experiments=[], live={"poll_s": 0, "rebuild_max_events": 10})
    with TestClient(create_app(again), headers=WRITE) as c:
        assert state_of(c).live.shoppers == 10
    # nothing received within the window: nothing rebuilt
    old = make_settings(experiments=[], live={"poll_s": 0, "rebuild_window_s": 0})
    with TestClient(create_app(old), headers=WRITE) as c:
        assert state_of(c).live.shoppers == 0


def test_erasure_clears_the_live_state_here_and_on_other_processes(make_settings: Any) -> None:
    settings = make_settings(experiments=[], live={"poll_s": 0})
    with TestClient(create_app(settings), headers=WRITE) as a, \
            TestClient(create_app(settings), headers=WRITE) as b:
        item = catalog_ids(a)[5]
        a.post("/v1/events", json={"events": [
            event("purchase", item, user_id="u-erase", session_id="s-erase"),
            event("view", item, session_id="s-erase")]})
        for c in (a, b):
            assert state_of(c).live_sync is not None
            state_of(c).live_sync.poll_once()   # type: ignore[union-attr]
            assert item in served(c, user_id="u-erase", surface="buy_again")
        r = a.delete("/v1/users/u-erase", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert not state_of(a).live.user_events("u-erase")
        assert not state_of(a).live.session_events("s-erase")
        assert item not in served(a, user_id="u-erase", surface="buy_again")
        # the other process learns it from the audit log on its next poll
        assert state_of(b).live.user_events("u-erase")
        state_of(b).live_sync.poll_once()       # type: ignore[union-attr]
        assert not state_of(b).live.user_events("u-erase")
        assert item not in served(b, user_id="u-erase", surface="buy_again")


# ---------------------------------------------------------------------- the store's feed
def test_the_feed_returns_events_after_a_position_and_the_gaps_asked_again(
        store_location: str) -> None:
    with open_store(store_location, audit_secret="s") as store:
        base = {"item_id": "i1", "event_type": "view", "timestamp": now_iso()}
        store.add_events([{**base, "event_id": f"e{i}", "user_id": f"u{i}"} for i in range(5)])
        rows = store.event_feed()
        assert [r.event_id for r in rows] == [f"e{i}" for i in range(5)]
        seqs = [r.seq for r in rows]
        assert seqs == sorted(seqs)
        assert [r.event_id for r in store.event_feed(after=seqs[2])] == ["e3", "e4"]
        again = store.event_feed(after=seqs[-1], also=[seqs[0], seqs[1]])
        assert [r.event_id for r in again] == ["e0", "e1"]
        back = store.event_feed(before=seqs[-1], limit=2)
        assert [r.event_id for r in back] == ["e3", "e2"]
        assert store.event_feed(after=seqs[-1]) == []
