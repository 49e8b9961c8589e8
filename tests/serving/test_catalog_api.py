"""The catalog API: create, update, delist with the write key; stored in the control log,
applied on every process and after restarts and reloads; a new item is recommendable at once;
bad values are a 4xx naming them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.recommender import HybridRecommender
from serving.app import create_app
from serving.event_store import CATALOG
from serving.state import ServingState
from tests.serving.conftest import ADMIN_KEY, READ_KEY, WRITE_KEY

WRITE = {"X-API-Key": WRITE_KEY}
NOW = datetime.now(UTC)


def state_of(client: TestClient) -> ServingState:
    return client.app.state.serving  # type: ignore[attr-defined,no-any-return]


def rec_of(client: TestClient) -> HybridRecommender:
    return state_of(client).bundles["default"].recommender


def served(client: TestClient, **body: Any) -> list[str]:
    r = client.post("/v1/recommendations", json={"k": 100, **body})
    assert r.status_code == 200, r.text
    return [item["item_id"] for item in r.json()["items"]]


def twin_of(client: TestClient, item_id: str, new_id: str, **fields: Any) -> dict[str, Any]:
    """A new item with ``item_id``'s metadata (so the same content embedding), and ``fields``."""
    rec = rec_of(client)
    row = rec.catalog.table.iloc[int(rec.items.to_internal([item_id])[0])]
    out: dict[str, Any] = {"item_id": new_id, "title": str(row["title"]),
                           "category": str(row["category"]), "price": float(row["price"])}
    for column in ("brand", "description"):
        if column in row and isinstance(row[column], str) and row[column]:
            out[column] = row[column]
    return {**out, **fields}


# every request served by the new-arrivals pipeline (what a shop's "new in" shelf would run)
ARRIVALS = {"name": "arrivals", "salt": "x", "traffic": 1.0,
            "variants": [{"name": "new", "weight": 1.0, "pipeline": "new_arrivals"}]}


@pytest.fixture
def client(make_settings: Any) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(experiments=[])), headers=WRITE) as c:
        yield c


def test_a_new_item_is_stored_served_and_recommendable_before_any_purchase(
        make_settings: Any) -> None:
    with TestClient(create_app(make_settings(experiments=[ARRIVALS])), headers=WRITE) as c:
        check_new_item(c)


def check_new_item(client: TestClient) -> None:
    first = str(rec_of(client).items.external_ids[0])
    launched = (NOW - timedelta(days=1)).isoformat()
    new = twin_of(client, first, "i-new-1", first_seen=launched, title="Lumo kettle",
                  category="launch")
    r = client.put("/v1/catalog/items", json={"items": [new]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == ["i-new-1"] and body["updated"] == [] and body["control_id"] > 0
    assert body["catalog_items"] == len(rec_of(client).items)
    item = client.get("/v1/catalog/items/i-new-1").json()
    assert item["title"] == "Lumo kettle" and item["category"] == "launch" and item["listed"]
    assert item["first_seen"].startswith(launched[:19])
    # its category: the only item in it, so any list of that category is this item
    assert served(client, filters={"categories": ["launch"]}) == ["i-new-1"]
    # the new-arrivals list shows it first, with its reason
    r = client.post("/v1/recommendations", json={
        "user_id": "u-nobody", "k": 5, "context": {"timestamp": NOW.isoformat()}})
    assert r.json()["variant"] == "new"
    first_item = r.json()["items"][0]
    assert first_item["item_id"] == "i-new-1" and "new in the shop" in first_item["reasons"]
    # embedded from its metadata at once: with an existing item's metadata, its embedding is
    # that item's, and its product page shows that item first
    twin = twin_of(client, first, "i-new-2")
    assert client.put("/v1/catalog/items", json={"items": [twin]}).status_code == 200
    rec = rec_of(client)
    a, b = rec.items.to_internal([first, "i-new-2"])
    content = rec.parts.spaces["content"].vectors
    np.testing.assert_allclose(content[b], content[a], atol=1e-5)
    similar = client.get("/v1/items/i-new-2/similar", params={"k": 5}).json()["items"]
    assert similar[0]["item_id"] == first
    # nobody bought them: nothing of theirs is in the store's events
    assert state_of(client).store.count_events() == 0


def test_updates_and_delisting_change_what_is_served(client: TestClient) -> None:
    anonymous = served(client)
    top, second = anonymous[0], anonymous[1]
    r = client.put("/v1/catalog/items", json={"items": [
        {"item_id": second, "price": 12345.0, "title": "Renamed"}]})
    assert r.json()["updated"] == [second]
    assert client.get(f"/v1/catalog/items/{second}").json()["price"] == 12345.0
    assert second not in served(client, filters={"price_max": 12000})
    r = client.delete(f"/v1/catalog/items/{top}")
    assert r.status_code == 200 and r.json()["delisted"] == [top]
    assert client.get(f"/v1/catalog/items/{top}").json()["listed"] is False
    for surface in ("for_you", "buy_again", "discover"):
        assert top not in served(client, surface=surface)
    assert top not in [i["item_id"] for i in client.get(
        f"/v1/items/{second}/similar", params={"k": 100}).json()["items"]]
    # listed again
    client.put("/v1/catalog/items", json={"items": [{"item_id": top, "listed": True}]})
    assert top in served(client)


def test_changes_survive_a_restart_and_a_reload(make_settings: Any, second_bundle: Path
                                                 ) -> None:
    settings = make_settings(experiments=[], live={"poll_s": 0})
    with TestClient(create_app(settings), headers=WRITE) as c:
        top = served(c)[0]
        c.delete(f"/v1/catalog/items/{top}")
        c.put("/v1/catalog/items", json={"items": [{"item_id": "i-kept", "category": "kept"}]})
    with TestClient(create_app(settings), headers=WRITE) as c:
        assert top not in served(c)
        assert c.get("/v1/catalog/items/i-kept").json()["category"] == "kept"
        r = c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY},
                   json={"bundle": "default", "path": str(second_bundle)})
        assert r.status_code == 200, r.text
        # the newly loaded bundle gets every change on top of its own catalog
        assert top not in served(c)
        assert c.get("/v1/catalog/items/i-kept").json()["category"] == "kept"


def test_a_change_made_elsewhere_is_applied_on_the_next_poll(make_settings: Any) -> None:
    settings = make_settings(experiments=[], live={"poll_s": 0})
    with TestClient(create_app(settings), headers=WRITE) as a, \
            TestClient(create_app(settings), headers=WRITE) as b:
        top = served(b)[0]
        assert a.delete(f"/v1/catalog/items/{top}").status_code == 200
        assert top in served(b)                       # b has not polled yet
        assert state_of(b).live_sync is not None
        state_of(b).live_sync.poll_once()             # type: ignore[union-attr]
        assert top not in served(b)
        records = state_of(b).store.control_log(kind=CATALOG)
        assert len(records) == 1 and records[0].payload == {
            "items": [{"item_id": top, "listed": False}]}


def test_catalog_writes_need_the_write_key(client: TestClient) -> None:
    change = {"items": [{"item_id": "i00001", "price": 1.0}]}
    assert client.put("/v1/catalog/items", json=change, headers={"X-API-Key": ""}
                      ).status_code == 401
    assert client.put("/v1/catalog/items", json=change,
                      headers={"X-API-Key": READ_KEY}).status_code == 401
    assert client.delete("/v1/catalog/items/i00001",
                         headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.put("/v1/catalog/items", json=change,
                      headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    assert state_of(client).store.control_log(kind=CATALOG)[-1].payload["items"] == [
        {"item_id": "i00001", "price": 1.0}]


def test_without_any_write_key_catalog_writes_are_closed(make_settings: Any) -> None:
    with TestClient(create_app(make_settings(experiments=[], keys={}))) as c:
        r = c.put("/v1/catalog/items", json={"items": [{"item_id": "x", "price": 1.0}]})
        assert r.status_code == 503


@pytest.mark.parametrize(("change", "named"), [
    ({"item_id": "i00001", "colour": "red"}, "colour"),
    ({"item_id": "i00001", "price": -1.0}, "price"),
    ({"item_id": "i00001", "price": "NaN"}, "price"),
    ({"item_id": "i00001", "price": 1e308}, "price"),
    ({"item_id": ""}, "item_id"),
    ({"item_id": "i00001", "title": ""}, "title"),
    ({"item_id": "i00001", "in_stock": "yes"}, "in_stock"),
    ({"item_id": "i00001", "listed": 0}, "listed"),
    ({"item_id": "i00001", "first_seen": "yesterday"}, "first_seen"),
    ({"title": "no id"}, "item_id"),
])
def test_bad_values_are_a_422_naming_them(client: TestClient, change: dict[str, Any],
                                          named: str) -> None:
    r = client.put("/v1/catalog/items", json={"items": [change]})
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]
    assert state_of(client).store.control_log(kind=CATALOG) == []    # nothing stored


def test_bad_batches_are_4xx(client: TestClient) -> None:
    r = client.put("/v1/catalog/items", json={"items": [{"item_id": "a", "price": 1.0},
                                                        {"item_id": "a", "price": 2.0}]})
    assert r.status_code == 422 and "'a' twice" in r.json()["detail"]
    r = client.put("/v1/catalog/items", json={"items": []})
    assert r.status_code == 422 and "items" in r.json()["detail"]
    r = client.put("/v1/catalog/items", content=b'{"items": [{"item_id": "a", "price": NaN}]}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    r = client.put("/v1/catalog/items", json={"items": [{"item_id": f"n{i}"}
                                                        for i in range(1001)]})
    assert r.status_code == 422 and "max_batch" in r.json()["detail"]
    assert client.delete("/v1/catalog/items/no-such-item").status_code == 404
    assert client.get("/v1/catalog/items/no-such-item").status_code == 404
    assert state_of(client).store.control_log(kind=CATALOG) == []
