"""The dashboard's page and JSON endpoints through TestClient: keys (header or HTTP Basic, 401
with a Basic challenge, 503 when closed), the preview (the shop's code, nothing recorded),
shoppers, the window of served lists against the lists the test itself received, the readout
against the experiments endpoint, and the OpenAPI entries."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from serving.app import create_app
from serving.dashboard_data import field_choices
from serving.schemas import RecommendationRequest
from serving.settings import ServingSettings
from tests.serving.conftest import (
    ADMIN_KEY,
    DASHBOARD_KEY,
    EXPERIMENT,
    READ_KEY,
    WRITE_KEY,
)

DASH = {"X-API-Key": DASHBOARD_KEY}
READ = {"X-API-Key": READ_KEY}
NAME = EXPERIMENT["name"]
GETS = ["/dashboard", "/dashboard/assets/app.js", "/v1/dashboard/experiments",
        f"/v1/dashboard/experiments/{NAME}/results", "/v1/dashboard/health",
        "/v1/dashboard/shoppers", "/v1/dashboard/shoppers/u000001",
        "/v1/dashboard/preview/options"]
OPERATIONS = {"dashboardExperiments", "dashboardExperimentResults", "dashboardHealth",
              "dashboardShoppers", "dashboardShopper", "dashboardPreviewOptions",
              "dashboardPreview"}


def basic(password: str, user: str = "dashboard") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def client(make_settings: Any) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as c:
        yield c


@pytest.fixture(scope="module")
def shared(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    """One app for the tests that only read (keys, the page): loading a bundle per case
    would cost a second each."""
    settings = ServingSettings.model_validate({
        "bundles": {"default": str(serving_bundle)},
        "event_store": str(tmp_path_factory.mktemp("dash") / "events.db"),
        "experiments": [EXPERIMENT], "warmup_requests": 0, "erasure_poll_s": 0,
        "keys": {"admin": ADMIN_KEY, "read": READ_KEY, "write": WRITE_KEY,
                 "dashboard": DASHBOARD_KEY}})
    with TestClient(create_app(settings)) as c:
        yield c


def rec_of(client: TestClient) -> Any:
    return client.app.state.serving.bundles["default"].recommender  # type: ignore[attr-defined]


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ---------------------------------------------------------------------- keys
@pytest.mark.parametrize("path", [*GETS, "/v1/dashboard/preview"])
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, READ, {"X-API-Key": WRITE_KEY},
                                     basic("wrong"), basic(READ_KEY),
                                     {"Authorization": "Basic !!!not-base64"},
                                     {"Authorization": "Bearer " + DASHBOARD_KEY}])
def test_without_the_key_everything_is_401_with_a_basic_challenge(
        shared: TestClient, path: str, headers: dict[str, str]) -> None:
    if path.endswith("/preview"):
        response = shared.post(path, json={}, headers=headers)
    else:
        response = shared.get(path, headers=headers)
    body = problem(response, 401)
    assert response.headers["www-authenticate"].startswith('Basic realm="recsys dashboard"')
    assert "HTTP Basic" in body["detail"]


@pytest.mark.parametrize("headers", [DASH, {"X-API-Key": ADMIN_KEY}, basic(DASHBOARD_KEY),
                                     basic(ADMIN_KEY), basic(DASHBOARD_KEY, user="")])
def test_dashboard_or_admin_key_in_header_or_basic(shared: TestClient,
                                                   headers: dict[str, str]) -> None:
    for path in GETS:
        assert shared.get(path, headers=headers).status_code == 200, path


def test_a_key_in_the_url_is_never_read(shared: TestClient) -> None:
    for query in (f"api_key={DASHBOARD_KEY}", f"key={DASHBOARD_KEY}",
                  f"X-API-Key={DASHBOARD_KEY}"):
        assert shared.get(f"/dashboard?{query}").status_code == 401
        assert shared.get(f"/v1/dashboard/health?{query}").status_code == 401


def test_closed_without_dashboard_and_admin_keys(make_settings: Any) -> None:
    with TestClient(create_app(make_settings(keys={"read": READ_KEY}))) as c:
        body = problem(c.get("/v1/dashboard/health", headers=DASH), 503)
        assert "RECSYS_DASHBOARD_KEY" in body["detail"]
        problem(c.get("/dashboard", headers=DASH), 503)


# ---------------------------------------------------------------------- the page
def test_page_and_assets_are_served_with_a_strict_policy(shared: TestClient) -> None:
    page = shared.get("/dashboard", headers=DASH)
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for src in ("/dashboard/assets/app.js", "/dashboard/assets/dashboard.css"):
        assert src in page.text
    assert "http://" not in page.text and "https://" not in page.text   # nothing from elsewhere
    js = shared.get("/dashboard/assets/experiments.js", headers=DASH)
    assert js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text
    for bad in ("nope.js", "..%2Fsettings.py", "index.html"):
        assert shared.get(f"/dashboard/assets/{bad}", headers=DASH).status_code == 404


def test_page_is_outside_the_openapi_document_and_json_endpoints_are_in_it(
        shared: TestClient) -> None:
    schema = shared.get("/openapi.json").json()
    assert "/dashboard" not in schema["paths"]
    ops = {op["operationId"]: op for path, methods in schema["paths"].items()
           for op in methods.values() if path.startswith("/v1/dashboard")}
    assert set(ops) == OPERATIONS
    for op in ops.values():
        schemes = {name for requirement in op["security"] for name in requirement}
        assert schemes == {"dashboardKey", "adminKey", "dashboardBasic"}
        assert "401" in op["responses"]
        assert "$ref" in op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["components"]["securitySchemes"]["dashboardBasic"] == {
        "type": "http", "scheme": "basic",
        "description": schema["components"]["securitySchemes"]["dashboardBasic"]["description"]}


# ---------------------------------------------------------------------- preview
def test_preview_is_the_shops_list_and_records_nothing(client: TestClient) -> None:
    shopper = client.get("/v1/dashboard/shoppers", headers=DASH).json()["shoppers"][0]["user_id"]
    request = {"user_id": shopper, "k": 6, "context": {"device": "mobile"}}
    metrics_before = metric_values(client)
    preview = client.post("/v1/dashboard/preview", json={"request": request}, headers=DASH)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert client.app.state.served_window.snapshot() == []   # type: ignore[attr-defined]
    client.app.state.serving.exposures.flush()                # type: ignore[attr-defined]
    assert client.app.state.serving.store.experiment_counts(NAME) == {}  # type: ignore
    assert metric_values(client) == metrics_before
    shop = client.post("/v1/recommendations", json=request).json()
    assert (body["arm"]["experiment"], body["arm"]["variant"]) == (shop["experiment"],
                                                                    shop["variant"])
    assert body["arm"]["assigned"] is True
    assert [(i["item_id"], i["score"], i["reasons"]) for i in body["items"]] == [
        (i["item_id"], i["score"], i["reasons"]) for i in shop["items"]]
    rec = rec_of(client)
    for item in body["items"]:
        i = int(rec.items.to_internal([item["item_id"]])[0])
        assert item["title"] == rec.catalog.titles[i]
        assert item["category"] == rec.catalog.category_of(i)
        assert item["price"] == pytest.approx(rec.catalog.price[i])


def metric_values(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics", headers=READ).text
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith(("recsys_recommendations", "recsys_fallbacks",
                                  "recsys_exposures", "recsys_guardrail"))}


def test_preview_of_a_chosen_variant_and_the_default(shared: TestClient) -> None:
    from recsys.recommender import Request

    user = "u000003"
    rec = rec_of(shared)
    for arm, pipeline in ((({"experiment": NAME, "variant": "control"}), "popularity"),
                          ("default", "hybrid")):
        r = shared.post("/v1/dashboard/preview", json={"request": {"user_id": user, "k": 5},
                                                       "arm": arm}, headers=DASH)
        assert r.status_code == 200, r.text
        assert r.json()["arm"]["pipeline"] == pipeline and not r.json()["arm"]["assigned"]
        expected = rec.variant(pipeline).recommend(Request(user_id=user, k=5)).items
        assert [i["item_id"] for i in r.json()["items"]] == [e.item_id for e in expected]


@pytest.mark.parametrize("body,status,where", [
    ({"arm": {"experiment": "nope", "variant": "control"}}, 404, "no experiment 'nope'"),
    ({"arm": {"experiment": NAME, "variant": "nope"}}, 404, "no variant 'nope'"),
    ({"arm": "sideways"}, 422, "body.arm"),
    ({"request": {"k": 101}}, 422, "body.request.k"),
    ({"request": {"context": {"cart": ["i1"] * 51}}}, 422, "body.request.context.cart"),
    ({"request": {"surfac": "for_you"}}, 422, "body.request.surfac"),
    ({"request": {"user_id": "u1"}, "record": True}, 422, "body.record"),
])
def test_bad_preview_requests_are_4xx(shared: TestClient, body: dict[str, Any], status: int,
                                      where: str) -> None:
    response = shared.post("/v1/dashboard/preview", json=body, headers=DASH)
    assert where in problem(response, status)["detail"]


def test_a_cross_site_form_cannot_make_a_preview(shared: TestClient) -> None:
    """A browser sends the Basic key with any request to this origin, a form posted by another
    site too; such a form cannot send JSON, and the preview reads JSON only."""
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = shared.post("/v1/dashboard/preview", content=b'{"request": {"k": 3}}',
                               headers={**basic(DASHBOARD_KEY), "Content-Type": media_type})
        assert problem(response, 422)["errors"][0]["loc"] == ["body"]


def test_preview_options_follow_the_request_schema(shared: TestClient) -> None:
    options = shared.get("/v1/dashboard/preview/options", headers=DASH).json()
    assert options["surfaces"] == field_choices(RecommendationRequest, "surface")[0]
    assert options["max_k"] == 100
    assert options["experiments"] == [{"name": NAME, "active": True,
                                       "variants": ["control", "treatment"]}]

    class WithSurface(RecommendationRequest):
        surface: Literal["for_you", "buy_again", "discover"] = "for_you"

    class Optional(RecommendationRequest):
        surface: Literal["for_you", "discover"] | None = None

    assert field_choices(WithSurface, "surface") == (["for_you", "buy_again", "discover"],
                                                     "for_you")
    assert field_choices(Optional, "surface") == (["for_you", "discover"], None)
    assert field_choices(RecommendationRequest, "no_such_field") == ([], None)


# ---------------------------------------------------------------------- shoppers
def test_shoppers_and_what_they_bought(client: TestClient) -> None:
    listed = client.get("/v1/dashboard/shoppers?limit=5", headers=DASH).json()
    counts = [s["purchases"] for s in listed["shoppers"]]
    assert len(counts) == 5 and counts == sorted(counts, reverse=True) and counts[-1] > 0
    rec = rec_of(client)
    top = listed["shoppers"][0]
    history = rec.history.slice(top["user_id"])
    assert top["purchases"] == int((history.types == 3).sum())
    assert max(int((rec.history.slice(u).types == 3).sum())
               for u in rec.history.users.external_ids) == top["purchases"]
    item = str(rec.items.external_ids[7])
    stored = client.post("/v1/events", headers={"X-API-Key": WRITE_KEY}, json={"events": [
        {"event_id": "dash-1", "user_id": top["user_id"], "item_id": item,
         "event_type": "purchase", "timestamp": "2026-02-20T10:00:00Z", "price": 3.5,
         "quantity": 2}]})
    assert stored.status_code == 202, stored.text
    detail = client.get(f"/v1/dashboard/shoppers/{top['user_id']}", headers=DASH).json()
    assert detail["known"] and detail["events"] == len(history)
    assert Counter(p["source"] for p in detail["purchases"]) == {
        "bundle": min(top["purchases"], 49), "store": 1}
    newest = detail["purchases"][0]
    assert (newest["item_id"], newest["source"], newest["price"], newest["quantity"]) == (
        item, "store", 3.5, 2)
    assert newest["title"] == rec.catalog.titles[7]
    unknown = client.get("/v1/dashboard/shoppers/nobody-at-all", headers=DASH).json()
    assert unknown == {"user_id": "nobody-at-all", "known": False, "events": 0,
                       "purchases": []}
    problem(client.get("/v1/dashboard/shoppers?limit=0", headers=DASH), 422)
    problem(client.get(f"/v1/dashboard/shoppers/{'x' * 257}", headers=DASH), 422)


# ---------------------------------------------------------------------- health, experiments
def test_health_window_matches_the_lists_served(client: TestClient) -> None:
    lists, fallbacks = [], 0
    users = [f"u{n:06d}" for n in range(1, 30)] + ["never-seen-1", "never-seen-2"]
    for user in users:
        body = client.post("/v1/recommendations", json={"user_id": user, "k": 8}).json()
        lists.append([i["item_id"] for i in body["items"]])
        fallbacks += body["fallback"]
    client.post("/v1/recommendations", json={"k": 0})        # a 422 is not a served list
    h = client.get("/v1/dashboard/health", headers=DASH).json()
    live = h["live"]
    overall = live["arms"][0]
    catalog = len(rec_of(client).items)
    slots = Counter(i for items in lists for i in items)
    top_n = -(-catalog // 100)
    assert overall["arm"] == "all" and overall["lists"] == len(lists)
    assert overall["slots"] == sum(slots.values())
    assert overall["coverage"] == pytest.approx(len(slots) / catalog)
    assert overall["top_n"] == top_n
    assert overall["top_share"] == pytest.approx(
        sum(c for _, c in slots.most_common(top_n)) / sum(slots.values()))
    assert overall["fallback_rate"] == pytest.approx(fallbacks / len(lists))
    assert fallbacks >= 2
    assert {a["arm"] for a in live["arms"][1:]} == {f"{NAME}/control", f"{NAME}/treatment"}
    assert sum(a["lists"] for a in live["arms"][1:]) == len(lists)
    assert sum(b["count"] for b in live["latency_histogram"]) == len(lists)
    assert live["top_items"][0]["slots"] == slots.most_common(1)[0][1]
    p = overall["latency_ms"]
    assert 0 < p["p50"] <= p["p90"] <= p["p95"] <= p["p99"]
    # the same window in /metrics
    text = client.get("/metrics", headers=READ).text
    exported = {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}
    assert exported[("recsys_served_lists", (("arm", "all"),))] == len(lists)
    assert exported[("recsys_served_coverage", (("arm", "all"),))] == pytest.approx(
        overall["coverage"])
    assert exported[("recsys_served_latency_seconds", (("arm", "all"), ("quantile", "0.99")))
                    ] == pytest.approx(p["p99"] / 1000)
    # the champion, from its manifest
    manifest = client.app.state.serving.bundles["default"].manifest  # type: ignore[attr-defined]
    champion = h["champion"]
    assert champion["version"] == manifest.version and champion["catalog_items"] == catalog
    assert champion["models"]["als"]["valid_metrics"] == manifest.models["als"].valid_metrics
    assert h["registry"]["available"] is False and "registry" in h["registry"]["note"]
    assert h["drift"]["available"] is True and "alerts firing" in h["drift"]["note"]


def test_experiments_and_readout_are_the_experiments_endpoints(client: TestClient) -> None:
    users = [f"u{n:06d}" for n in range(1, 40)]
    events = []
    for n, user in enumerate(users):
        body = client.post("/v1/recommendations", json={"user_id": user, "k": 4}).json()
        events.append({"event_id": f"c{n}", "user_id": user, "item_id": body["items"][0]["item_id"],
                       "event_type": "click", "timestamp": "2026-02-20T10:00:00Z",
                       "request_id": body["request_id"], "position": 0})
    assert client.post("/v1/events", json={"events": events},
                       headers={"X-API-Key": WRITE_KEY}).status_code == 202
    listed = client.get("/v1/dashboard/experiments", headers=DASH).json()["experiments"]
    detail = client.get(f"/v1/experiments/{NAME}", headers=READ).json()
    assert listed == [detail]
    assert listed[0]["salt"] is None
    assert sum(v["units"] for v in listed[0]["counts"].values()) == len(users)
    mine = client.get(f"/v1/dashboard/experiments/{NAME}/results", headers=DASH).json()
    theirs = client.get(f"/v1/experiments/{NAME}/results", headers=READ).json()
    mine.pop("generated_at"), theirs.pop("generated_at")
    assert mine == theirs
    assert mine["summary"]["control"]["clicks"] + mine["summary"]["treatment"]["clicks"] == 39
    problem(client.get("/v1/dashboard/experiments/nope/results", headers=DASH), 404)
