"""The HTTP API through TestClient: each endpoint's contract, the limits and errors (client input
is always a 4xx, never a 500), idempotent events, erasure, reload, metrics and settings."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.errors import ConfigError
from recsys.recommender import HybridRecommender
from serving import service
from serving.app import create_app
from serving.event_store import SQLiteEventStore
from serving.experiments import Experiment, assign
from serving.settings import ServingSettings, load_settings
from tests.serving.conftest import ADMIN_KEY, EXPERIMENT, READ_KEY, WRITE_KEY

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"X-API-Key": ADMIN_KEY}
READ = {"X-API-Key": READ_KEY}
WRITE = {"X-API-Key": WRITE_KEY}
T = "2026-01-20T12:00:00Z"


@pytest.fixture
def client(make_settings: Any) -> Iterator[TestClient]:
    """A client that sends the write key (events); other roles pass their key per call."""
    with TestClient(create_app(make_settings()), headers=WRITE) as c:
        yield c


def rec_of(client: TestClient) -> HybridRecommender:
    return client.app.state.serving.bundles["default"].recommender  # type: ignore[attr-defined]


def known_user(client: TestClient) -> str:
    rec = rec_of(client)
    lengths = np.diff(rec.history.offsets)
    return str(rec.history.users.external_ids[int(np.argmax(lengths))])


def item_ids(client: TestClient, n: int) -> list[str]:
    return [str(i) for i in rec_of(client).items.external_ids[:n]]


def event(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": extra.pop("user_id", "u-events"),
            "item_id": extra.pop("item_id", "i00001"), "event_type": "click", "timestamp": T,
            **extra}


def error_locs(response: Any) -> list[list[Any]]:
    return [e["loc"] for e in response.json()["errors"]]


def is_problem(response: Any, status: int) -> bool:
    """An RFC 9457 problem document with ``status`` (every 4xx and 5xx of the API)."""
    body = response.json()
    return (response.status_code == status
            and response.headers["content-type"] == "application/problem+json"
            and body["status"] == status and body["type"] == "about:blank"
            and isinstance(body["title"], str) and isinstance(body["detail"], str))


# ---------------------------------------------------------------------- recommendations
def test_recommendations_contract(client: TestClient) -> None:
    user = known_user(client)
    r = client.post("/v1/recommendations", json={
        "user_id": user, "context": {"device": "mobile", "timestamp": T}, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"request_id", "model_version", "experiment", "variant", "fallback",
                         "items", "warnings"}
    assert body["model_version"] == client.app.state.serving.bundles["default"].version  # type: ignore[attr-defined]
    assert len(body["request_id"]) == 32 and body["fallback"] is False
    items = body["items"]
    assert [i["rank"] for i in items] == list(range(1, 8))
    assert len({i["item_id"] for i in items}) == 7
    assert all(i["reasons"] and isinstance(i["score"], float) for i in items)


def test_variant_follows_bucketing_and_is_logged(client: TestClient) -> None:
    exp = Experiment.model_validate(EXPERIMENT)
    seen = {}
    for n in range(12):
        user = f"visitor-{n}"
        body = client.post("/v1/recommendations", json={"user_id": user, "k": 3}).json()
        expected = assign(exp, user, None)
        assert expected is not None
        assert (body["experiment"], body["variant"]) == (exp.name, expected.variant)
        seen[body["request_id"]] = body
    assert {b["variant"] for b in seen.values()} == {"control", "treatment"}
    # anonymous: the session id is the unit
    body = client.post("/v1/recommendations", json={"session_id": "s-1", "k": 3}).json()
    assert body["variant"] == assign(exp, None, "s-1").variant  # type: ignore[union-attr]
    detail = client.get(f"/v1/experiments/{exp.name}", headers=READ).json()
    assert sum(v["exposures"] for v in detail["counts"].values()) == 13
    store: SQLiteEventStore = client.app.state.serving.store  # type: ignore[attr-defined]
    rid, first = next(iter(seen.items()))
    with store._snapshot() as conn:
        variant, unit, items = conn.execute(
            "SELECT variant, unit, items FROM exposures WHERE request_id = ?", (rid,)).fetchone()
    assert (variant, unit) == (first["variant"], "visitor-0")
    assert [x["item_id"] for x in json.loads(items)] == [i["item_id"] for i in first["items"]]


def test_no_experiment_serves_the_default_hybrid(make_settings: Any) -> None:
    with TestClient(create_app(make_settings(experiments=[]))) as c:
        body = c.post("/v1/recommendations", json={"user_id": "x", "k": 2}).json()
        assert body["experiment"] is None and body["variant"] is None
        assert len(body["items"]) == 2


def test_unknown_user_gets_the_fallback(client: TestClient) -> None:
    body = client.post("/v1/recommendations", json={"user_id": "never-seen", "k": 5}).json()
    assert body["fallback"] is True and len(body["items"]) == 5
    body = client.post("/v1/recommendations", json={"k": 5}).json()   # no id at all
    assert body["fallback"] is True and body["experiment"] is None


def test_unknown_cart_item_is_a_warning(client: TestClient) -> None:
    cart = [*item_ids(client, 2), "no-such-item"]
    r = client.post("/v1/recommendations", json={"user_id": "u", "context": {"cart": cart}})
    assert r.status_code == 200
    assert any("no-such-item" in w for w in r.json()["warnings"])
    returned = {i["item_id"] for i in r.json()["items"]}
    assert not returned & set(cart)       # the cart is never recommended back


def test_filters_apply(client: TestClient) -> None:
    rec = rec_of(client)
    category = str(rec.catalog.categories[0])
    body = client.post("/v1/recommendations", json={
        "k": 5, "filters": {"categories": [category, "Nope"], "price_max": 1e9,
                            "exclude_items": item_ids(client, 3)}}).json()
    cats = rec.catalog.categories[rec.catalog.category_codes[
        rec.items.to_internal([i["item_id"] for i in body["items"]])]]
    assert set(map(str, cats)) == {category}
    assert any("Nope" in w for w in body["warnings"])


def test_surfaces_fill_their_own_lists(client: TestClient) -> None:
    rec = rec_of(client)
    user = known_user(client)
    bought = set(map(str, rec.items.to_external(rec.history.slice(user).purchased())))
    lists = {surface: [i["item_id"] for i in client.post("/v1/recommendations", json={
        "user_id": user, "k": 10, "surface": surface}).json()["items"]]
             for surface in ("for_you", "buy_again", "discover")}
    assert lists["buy_again"] and set(lists["buy_again"]) <= bought
    assert lists["discover"] and not set(lists["discover"]) & bought
    r = client.post("/v1/recommendations", json={"user_id": user, "surface": "elsewhere"})
    assert r.status_code == 422 and error_locs(r) == [["body", "surface"]]


@pytest.mark.parametrize("k", [0, 101, -1])
def test_k_out_of_range_is_422_naming_k(client: TestClient, k: int) -> None:
    r = client.post("/v1/recommendations", json={"k": k})
    assert r.status_code == 422
    assert error_locs(r) == [["body", "k"]]


@pytest.mark.parametrize("field", ["cart", "recent_views"])
def test_context_lists_over_the_limit_are_422(client: TestClient, field: str) -> None:
    r = client.post("/v1/recommendations",
                    json={"context": {field: [f"i{n}" for n in range(51)]}})
    assert r.status_code == 422
    assert error_locs(r) == [["body", "context", field]]
    ok = client.post("/v1/recommendations", json={"context": {field: ["i"] * 50}})
    assert ok.status_code == 200


@pytest.mark.parametrize("body", [
    {"k": "ten"}, {"k": 1.5}, {"user_id": 42}, {"user_id": ""}, {"context": {"cart": "i1"}},
    {"context": {"device": "fridge"}}, {"context": {"timestamp": "yesterday"}},
    {"filters": {"price_min": 10, "price_max": 5}}, {"filters": {"price_min": -1}},
    {"unknown_key": 1}, {"context": {"cart": [None]}}, [], "text", None,
    {"context": {"timestamp": "9999-01-01T00:00:00Z"}},
    {"context": {"timestamp": "0001-01-01T00:00:00"}}, {"filters": {"price_min": 1e308}},
])
def test_malformed_requests_are_4xx(client: TestClient, body: Any) -> None:
    r = client.post("/v1/recommendations", json=body)
    assert is_problem(r, 422), r.text
    assert isinstance(r.json()["errors"], list) and r.json()["errors"]


@pytest.mark.parametrize("body", [
    {"context": {"timestamp": "2262-04-10T00:00:00Z"}},
    {"context": {"timestamp": "1970-01-01T00:00:00"}},
    {"filters": {"price_min": 1e9}, "k": 100},
    {"filters": {"categories": ["x"] * 500}},
    {"user_id": "ü🙂 ' OR 1=1", "context": {"cart": ["i00001", "i00001"],
                                          "current_item": "zzz", "recent_views": ["zzz"]}},
])
def test_odd_but_valid_requests_are_200(client: TestClient, body: Any) -> None:
    r = client.post("/v1/recommendations", json=body)
    assert r.status_code == 200, r.text


def test_broken_json_and_wrong_method_are_4xx(client: TestClient) -> None:
    r = client.post("/v1/recommendations", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.get("/v1/recommendations").status_code == 405
    assert client.get("/v1/nothing-here").status_code == 404


def test_body_too_large_is_413(make_settings: Any) -> None:
    with TestClient(create_app(make_settings(limits={"max_body_bytes": 2048}))) as c:
        big = {"user_id": "u", "context": {"cart": ["x" * 100] * 30}}
        r = c.post("/v1/recommendations", json=big)
        assert r.status_code == 413 and "limit is 2048 bytes" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:     # no Content-Length: counted while reading
            yield b'{"events": ['
            for _ in range(40):
                yield json.dumps(event("e" * 80)).encode() + b","
            yield b"]}"

        r = c.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        small = c.post("/v1/recommendations", json={"k": 2})     # still fine below the limit
        assert small.status_code == 200


def test_domain_error_is_422_and_a_bug_is_a_json_500(client: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.errors import DataError

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise DataError("k = 5000 (expected 1..100)")

    monkeypatch.setattr(service, "recommend", refuse)
    r = client.post("/v1/recommendations", json={})
    assert is_problem(r, 422) and r.json()["detail"] == "k = 5000 (expected 1..100)"

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "recommend", bug)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.post("/v1/recommendations", json={})
    assert is_problem(r, 500) and r.json()["detail"].startswith("internal server error")


# ---------------------------------------------------------------------- similar items
def test_similar_items(client: TestClient) -> None:
    item = item_ids(client, 1)[0]
    r = client.get(f"/v1/items/{item}/similar", params={"k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["item_id"] == item and len(body["items"]) == 4
    assert item not in {i["item_id"] for i in body["items"]}
    r = client.get("/v1/items/no-such-item/similar")
    assert r.status_code == 404 and "no-such-item" in r.json()["detail"]
    for k in (0, 101):
        r = client.get(f"/v1/items/{item}/similar", params={"k": k})
        assert r.status_code == 422 and error_locs(r) == [["query", "k"]]
    # a parameter given twice is refused, not served with its last value
    r = client.get(f"/v1/items/{item}/similar?k=&k=4")
    assert r.status_code == 422 and "'k' given 2 times" in r.json()["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")


# ---------------------------------------------------------------------- events
def test_events_are_stored_and_idempotent(client: TestClient) -> None:
    batch = [event(f"e{n}", position=n, request_id="r1", price=9.5, quantity=2,
                   device="app", session_id="s1") for n in range(5)]
    batch[4]["event_type"] = "impression"
    r = client.post("/v1/events", json={"events": batch})
    assert r.status_code == 202
    assert r.json() == {"received": 5, "inserted": 5, "duplicates": 0, "rejected": 0,
                        "errors": []}
    r = client.post("/v1/events", json={"events": batch + [event("e9")]})
    assert r.status_code == 202
    assert (r.json()["inserted"], r.json()["duplicates"]) == (1, 5)
    store = client.app.state.serving.store  # type: ignore[attr-defined]
    assert store.count_events(user_id="u-events") == 6


def test_invalid_events_are_reported_and_valid_ones_stored(client: TestClient) -> None:
    batch = [
        event("ok-1"),
        event("bad-type", event_type="buy"),
        {k: v for k, v in event("no-time").items() if k != "timestamp"},
        event("no-unit", user_id=None),
        event("bad-pos", position=-1, price=-2),
        event("ok-2", timestamp=1767225600),      # Unix seconds
        event("future", timestamp="2999-01-01T00:00:00Z"),
        event("extra", color="red"),
        "not an object",
        event("ancient", timestamp="0001-01-01T00:00:00"),
        event("huge-pos", position=2**63),             # beyond SQLite's 64-bit integers
        event("huge-qty", quantity=2**64, event_type="purchase"),
        event("text-qty", quantity="5"),               # strict: no string -> int
        event("bool-price", price=False),              # strict: no false -> 0
        event("inf-price", price="INF"),               # 1e309 in the JSON text: inf
        event("surrogate\ud800"),
        event("ok-3", user_id="u-events", session_id="s\u00e9"),
    ]
    text = json.dumps({"events": batch}).replace('"INF"', "1e309")
    r = client.post("/v1/events", content=text, headers={"content-type": "application/json"})
    # any rejected event makes the answer a 422 problem; the valid ones are stored anyway
    assert is_problem(r, 422), r.text
    body = r.json()
    assert (body["received"], body["inserted"], body["rejected"]) == (17, 3, 14)
    errors = {(e["index"], e["field"]) for e in body["errors"]}
    assert {(1, "event_type"), (2, "timestamp"), (3, None), (4, "position"), (4, "price"),
            (6, "timestamp"), (7, "color"), (8, None), (9, "timestamp"), (10, "position"),
            (11, "quantity"), (12, "quantity"), (13, "price"), (14, "price"),
            (15, "event_id")} <= errors
    assert "unicode" in next(e["message"] for e in body["errors"] if e["index"] == 15)
    assert "14 of 17 event(s) rejected; 3 stored" in body["detail"]
    assert all(e["message"] for e in body["errors"])
    store = client.app.state.serving.store  # type: ignore[attr-defined]
    assert store.count_events(user_id="u-events") == 3
    again = client.post("/v1/events", content=text,                # retrying is safe
                        headers={"content-type": "application/json"})
    assert (again.json()["inserted"], again.json()["duplicates"]) == (0, 3)


def test_nul_in_text_is_refused_everywhere(client: TestClient) -> None:
    """PostgreSQL text cannot hold NUL: an id with one is refused at the door, whatever the
    store, so a PostgreSQL store never sees it (and a batch of exposures is never lost to it)."""
    r = client.post("/v1/events", json={"events": [event("ok"), event("n", user_id="a\x00b")]})
    assert is_problem(r, 422) and r.json()["inserted"] == 1
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(1, "user_id")]
    assert "pattern" in r.json()["errors"][0]["message"]
    r = client.post("/v1/recommendations", json={"user_id": "a\x00b", "k": 2})
    assert is_problem(r, 422) and error_locs(r) == [["body", "user_id"]]
    assert is_problem(client.delete("/v1/users/a%00b", headers=ADMIN), 422)


def test_all_invalid_batch_is_422_and_stores_nothing(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": [event("x", event_type="nope")]})
    assert is_problem(r, 422) and r.json()["rejected"] == 1
    assert client.app.state.serving.store.count_events() == 0  # type: ignore[attr-defined]


def test_batch_limits(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": [event(f"b{n}") for n in range(1001)]})
    assert r.status_code == 422 and error_locs(r) == [["body", "events"]]
    assert client.post("/v1/events", json={"events": []}).status_code == 422
    assert client.post("/v1/events", json=[event("x")]).status_code == 422
    r = client.post("/v1/events", json={"events": [event(f"b{n}") for n in range(1000)]})
    assert r.status_code == 202 and r.json()["inserted"] == 1000


# ---------------------------------------------------------------------- experiments
def test_experiments_endpoints(client: TestClient) -> None:
    body = client.get("/v1/experiments", headers=READ).json()
    assert [e["name"] for e in body["experiments"]] == [EXPERIMENT["name"]]
    served = client.post("/v1/recommendations", json={"user_id": "buyer", "k": 3}).json()
    item = served["items"][0]["item_id"]
    client.post("/v1/events", json={"events": [event(
        "click-1", user_id="buyer", item_id=item, request_id=served["request_id"], position=0)]})
    detail = client.get(f"/v1/experiments/{EXPERIMENT['name']}", headers=READ).json()
    assert [v["name"] for v in detail["variants"]] == ["control", "treatment"]
    counts = detail["counts"][served["variant"]]
    assert counts["units"] == 1 and counts["exposures"] == 1
    assert counts["events"]["click"] == 1
    assert counts["window_requests"] == 1 and counts["guardrails"] == []
    r = client.get("/v1/experiments/nope", headers=READ)
    assert r.status_code == 404 and EXPERIMENT["name"] in r.json()["detail"]


def test_guardrails_report_after_enough_requests(make_settings: Any) -> None:
    settings = make_settings(guardrails={"min_requests": 10, "fallback_rate": 0.5})
    with TestClient(create_app(settings)) as c:
        for n in range(40):
            c.post("/v1/recommendations", json={"user_id": f"new-{n}", "k": 2})
        detail = c.get(f"/v1/experiments/{EXPERIMENT['name']}", headers=READ).json()
        for variant in detail["counts"].values():
            checks = {g["name"]: g for g in variant["guardrails"]}
            assert checks["fallback_rate"]["value"] == 1.0       # all users unknown
            assert checks["fallback_rate"]["passed"] is False
            assert checks["latency_p99_ms"]["value"] > 0
        text = c.get("/metrics", headers=READ).text
        control = f"{EXPERIMENT['name']}/control"
        assert f'recsys_guardrail_ok{{guardrail="fallback_rate",variant="{control}"}} 0.0' in text


# ---------------------------------------------------------------------- admin
@pytest.mark.parametrize("call", [
    ("post", "/v1/admin/reload", {"bundle": "default", "path": "/nowhere"}),
    ("delete", "/v1/users/u1", None),
])
def test_admin_needs_the_key(client: TestClient, call: tuple[str, str, Any]) -> None:
    method, url, body = call
    kwargs = {"json": body} if body is not None else {}
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
        r = client.request(method.upper(), url, headers=headers, **kwargs)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]


def test_admin_disabled_without_a_key(make_settings: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_ADMIN_KEY", raising=False)
    with TestClient(create_app(make_settings(keys={}))) as c:
        r = c.delete("/v1/users/u1", headers={"X-API-Key": "anything"})
        assert r.status_code == 503 and "RECSYS_ADMIN_KEY" in r.json()["detail"]
    monkeypatch.setenv("RECSYS_ADMIN_KEY", "from-env")
    with TestClient(create_app(make_settings(keys={}))) as c:
        assert c.delete("/v1/users/u1", headers={"X-API-Key": "from-env"}).status_code == 200


def test_delete_user_erases_store_and_memory(client: TestClient) -> None:
    user = known_user(client)
    rec = rec_of(client)
    before = client.post("/v1/recommendations", json={"user_id": user, "k": 3}).json()
    client.post("/v1/events", json={"events": [event(f"d{n}", user_id=user) for n in range(3)]})
    assert len(rec.history.slice(user)) > 0
    r = client.delete(f"/v1/users/{user}", headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert body["events"] == 3 and body["exposures"] == (1 if before["experiment"] else 0)
    assert body["history_dropped"] == ["default"] and body["factors_zeroed"] == ["default"]
    store = client.app.state.serving.store  # type: ignore[attr-defined]
    assert store.count_events(user_id=user) == 0
    assert rec.history.slice(user).items.size == 0
    assert not rec.is_known(user)   # no history, no model vector left
    assert [a["subject"] for a in store.audit_log()] == [store.audit_subject(user)]
    after = client.post("/v1/recommendations", json={"user_id": user, "k": 3})
    assert after.status_code == 200 and len(after.json()["items"]) == 3
    assert after.json()["fallback"]     # unknown now: nothing personal in its reasons
    reasons = [r for item in after.json()["items"] for r in item["reasons"]]
    assert not any("tastes like yours" in r or "you bought" in r for r in reasons), reasons
    again = client.delete(f"/v1/users/{user}", headers=ADMIN).json()  # idempotent
    assert (again["events"], again["history_dropped"]) == (0, [])


def test_reload_swaps_the_model_and_keeps_erasures(client: TestClient,
                                                   second_bundle: Path) -> None:
    old = client.post("/v1/recommendations", json={"k": 2}).json()["model_version"]
    user = known_user(client)
    client.delete(f"/v1/users/{user}", headers=ADMIN)
    r = client.post("/v1/admin/reload", headers=ADMIN,
                    json={"bundle": "default", "path": str(second_bundle)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous_version"] == old and body["model_version"] != old
    new = client.post("/v1/recommendations", json={"k": 2}).json()["model_version"]
    assert new == body["model_version"]
    assert client.get("/readyz").json()["bundles"]["default"] == new
    assert len(rec_of(client).history.slice(user)) == 0   # erased before, erased in the new one
    metrics = client.get("/metrics", headers=READ).text
    assert f'recsys_model_info{{bundle="default",version="{new}"}} 1.0' in metrics
    assert f'version="{old}"' not in metrics


def test_reload_errors_are_4xx(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/v1/admin/reload", headers=ADMIN, json={"bundle": "nope", "path": "/x"})
    assert r.status_code == 404
    r = client.post("/v1/admin/reload", headers=ADMIN,
                    json={"bundle": "default", "path": str(tmp_path)})
    assert r.status_code == 422 and str(tmp_path) in r.json()["detail"]
    assert client.post("/v1/recommendations", json={"k": 2}).status_code == 200


# ---------------------------------------------------------------------- health and metrics
def test_health_and_readiness(make_settings: Any) -> None:
    app = create_app(make_settings())
    c = TestClient(app)                      # no lifespan yet: nothing loaded
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 503
    assert c.post("/v1/recommendations", json={}).status_code == 503
    with TestClient(app) as live:
        r = live.get("/readyz")
        assert r.status_code == 200 and set(r.json()["bundles"]) == {"default"}
    assert c.get("/readyz").status_code == 503    # shut down


def test_metrics_expose_the_counters(client: TestClient) -> None:
    client.post("/v1/recommendations", json={"user_id": "nobody", "k": 2})
    client.post("/v1/recommendations", json={"k": 0})
    client.post("/v1/events", json={"events": [event("m1"), event("m1"), event("m2", k=1)]})
    client.get(f"/v1/experiments/{EXPERIMENT['name']}", headers=READ)   # flushes exposures
    text = client.get("/metrics", headers=READ).text
    exp = EXPERIMENT["name"]
    assert 'recsys_requests_total{endpoint="/v1/recommendations",method="POST",status="422",' \
           'variant="none"} 1.0' in text
    assert 'endpoint="/v1/recommendations",le="0.1",variant="' + exp in text
    assert "recsys_recommendations_total{variant=" in text
    assert "recsys_fallbacks_total{variant=" in text
    for result, n in (("inserted", 1), ("duplicate", 1), ("rejected", 1)):
        assert f'recsys_events_total{{result="{result}"}} {n}.0' in text
    assert 'recsys_exposures_total{result="written"} 1.0' in text
    assert "recsys_exposure_queue 0.0" in text
    assert client.get("/docs").status_code == 200
    assert "/v1/recommendations" in client.get("/openapi.json").json()["paths"]


def test_apps_have_separate_registries(make_settings: Any) -> None:
    a, b = create_app(make_settings()), create_app(make_settings())
    assert a.state.metrics.registry is not b.state.metrics.registry


# ---------------------------------------------------------------------- settings
def test_example_config_loads() -> None:
    settings = load_settings(ROOT / "configs" / "serving.toml")
    exps = settings.experiments_config().active_experiments()
    assert {v.pipeline for v in exps[0].variants} == {"popularity", "hybrid"}


def test_settings_reject_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('bundles = {default = "b"}\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_settings(path)
    path.write_text('bundles = {main = "b"}\n')
    with pytest.raises(ConfigError, match="default"):
        load_settings(path)
    path.write_text('bundles = {default = "b"}\n[limits]\nmax_k = 0\n')
    with pytest.raises(ConfigError, match="limits.max_k"):
        load_settings(path)
    bad_bundle = {**EXPERIMENT, "variants": [{"name": "a", "weight": 1.0, "bundle": "other"}]}
    settings = ServingSettings.model_validate({"bundles": {"default": "b"},
                                               "experiments": [bad_bundle]})
    with pytest.raises(ConfigError, match="unknown bundle 'other'"):
        settings.experiments_config()
    assert load_settings(None, bundle="x").bundles["default"] == Path("x")
    with pytest.raises(ConfigError):
        load_settings(None)


# ---------------------------------------------------------------------- erasure across workers
def test_erasure_reaches_another_worker(make_settings: Any) -> None:
    settings = make_settings()       # the same event store file, as uvicorn workers share
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        user = known_user(a)
        assert len(rec_of(b).history.slice(user)) > 0
        assert a.delete(f"/v1/users/{user}", headers=ADMIN).status_code == 200
        b.app.state.serving.sync_erasures()  # type: ignore[attr-defined]  # what its poller does
        assert len(rec_of(b).history.slice(user)) == 0


# ---------------------------------------------------------------------- exposure log
def _exposure(n: int) -> Any:
    from datetime import UTC, datetime

    from serving.exposures import Exposure

    return Exposure(f"r{n}", "e", "v", f"u{n}", ("i1", "i2"), "v1", datetime.now(UTC))


def test_exposure_writer_batches_flushes_and_drops(tmp_path: Path) -> None:
    from serving.exposures import ExposureWriter

    results: Counter[str] = Counter()
    with SQLiteEventStore(tmp_path / "x.db") as store:
        writer = ExposureWriter(store, max_queue=5, max_batch=3, flush_interval_s=10.0,
                                on_result=lambda r, n: results.update({r: n}))
        # not started: the queue fills up, then drops
        assert [writer.submit(_exposure(n)) for n in range(7)] == [True] * 5 + [False] * 2
        assert results["dropped"] == 2
        writer.start()
        assert writer.flush(timeout=5.0)          # does not wait for the 10 s interval
        assert results["written"] == 5 and writer.pending == 0
        assert writer.submit(_exposure(0))        # same request id: kept once
        writer.close()
        assert results["duplicate"] == 1
        assert sum(v.exposures for v in store.experiment_counts("e").values()) == 5
        assert not writer.submit(_exposure(99))   # closed: dropped, never blocks


def test_synchronous_exposures(make_settings: Any) -> None:
    with TestClient(create_app(make_settings(exposures={"mode": "synchronous"}))) as c:
        c.post("/v1/recommendations", json={"user_id": "sync-user", "k": 2})
        store = c.app.state.serving.store  # type: ignore[attr-defined]
        counts = store.experiment_counts(EXPERIMENT["name"])
        assert sum(v.exposures for v in counts.values()) == 1


def test_experiment_results_endpoint(client: TestClient) -> None:
    """The readout route: per-variant units and clicks from the stored log, lift rows, SRM."""
    items_by_user = {}
    for n in range(60):
        user = f"reader-{n}"
        served = client.post("/v1/recommendations", json={"user_id": user, "k": 3}).json()
        items_by_user[user] = (served["request_id"], served["items"][0]["item_id"])
    events = [event(f"imp-{u}", user_id=u, item_id=i, request_id=r, position=0,
                    event_type="impression") for u, (r, i) in items_by_user.items()]
    events += [event(f"clk-{u}", user_id=u, item_id=i, request_id=r, position=0)
               for k, (u, (r, i)) in enumerate(items_by_user.items()) if k % 3 == 0]
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    r = client.get(f"/v1/experiments/{EXPERIMENT['name']}/results", headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    summary = body["summary"]
    assert summary["control"]["units"] + summary["treatment"]["units"] == 60
    assert summary["control"]["impressions"] + summary["treatment"]["impressions"] == 60
    assert summary["control"]["clicks"] + summary["treatment"]["clicks"] == 20
    assert {row["metric"] for row in body["lift"]} >= {"ctr", "revenue_per_unit"}
    assert "srm" in body
    assert client.get("/v1/experiments/nope/results", headers=READ).status_code == 404
