"""Keys by role, as docs/api.md states them: every route x {no key, write, read, dashboard, admin,
a wrong key} answers its documented status (401 for a missing or wrong key, 503 for a role with
no key configured, 2xx where the key is accepted); experiment salts only with the admin key; a
key in the URL's query string (or a cookie) is never read; CORS headers only for the allowed
origin."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.conftest import ADMIN_KEY, DASHBOARD_KEY, READ_KEY, WRITE_KEY

SALT = "salt-only-the-admin-sees-7f3e"     # distinctive: searched for in every answer
EXPERIMENT = {"name": "keys-exp", "salt": SALT, "traffic": 1.0,
              "variants": [{"name": "control", "weight": 0.5, "pipeline": "popularity"},
                           {"name": "treatment", "weight": 0.5, "pipeline": "hybrid"}]}
KEYS: dict[str, str | None] = {"none": None, "write": WRITE_KEY, "read": READ_KEY,
                               "dashboard": DASHBOARD_KEY, "admin": ADMIN_KEY,
                               "wrong": "not-a-key-of-this-server"}
# docs/api.md, "Keys by role": the keys each role accepts (the admin key everywhere)
ACCEPTED = {None: set(KEYS), "write": {"write", "admin"}, "read": {"read", "admin"},
            "admin": {"admin"}}
ENV_NAMES = ("RECSYS_WRITE_KEY", "RECSYS_READ_KEY", "RECSYS_DASHBOARD_KEY", "RECSYS_ADMIN_KEY")
ORIGIN = "https://shop.example"
_ids = count()


def events_body() -> dict[str, Any]:
    return {"events": [{"event_id": f"key-test-{next(_ids)}", "user_id": "u-keys",
                        "item_id": "i00001", "event_type": "view",
                        "timestamp": "2026-01-20T12:00:00Z"}]}


# operation id -> (method, path, body, role (None: no key needed), documented success)
ROUTES: dict[str, tuple[str, str, Any, str | None, int]] = {
    "recommend": ("POST", "/v1/recommendations", {"k": 2}, None, 200),
    "similarItems": ("GET", "/v1/items/i00001/similar?k=2", None, None, 200),
    "ingestEvents": ("POST", "/v1/events", events_body, "write", 202),
    "listExperiments": ("GET", "/v1/experiments", None, "read", 200),
    "getExperiment": ("GET", f"/v1/experiments/{EXPERIMENT['name']}", None, "read", 200),
    "getExperimentResults": ("GET", f"/v1/experiments/{EXPERIMENT['name']}/results", None,
                             "read", 200),
    "reloadBundle": ("POST", "/v1/admin/reload", "reload", "admin", 200),
    "eraseUser": ("DELETE", "/v1/users/u-erased-by-the-matrix", None, "admin", 200),
    "healthz": ("GET", "/healthz", None, None, 200),
    "readyz": ("GET", "/readyz", None, None, 200),
    "metrics": ("GET", "/metrics", None, "read", 200),
}


def settings_for(bundle: Path, store: Path, **overrides: Any) -> ServingSettings:
    data: dict[str, Any] = {
        "bundles": {"default": str(bundle)}, "event_store": str(store),
        "experiments": [EXPERIMENT], "warmup_requests": 0, "erasure_poll_s": 0,
        "control_poll_s": 0,
        "keys": {"admin": ADMIN_KEY, "read": READ_KEY, "write": WRITE_KEY,
                 "dashboard": DASHBOARD_KEY},
        "cors": {"allow_origins": [ORIGIN]},
    }
    data.update(overrides)
    return ServingSettings.model_validate(data)


@pytest.fixture(scope="module")
def client(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    """One app for the whole matrix: every key of every role configured, one allowed origin."""
    store = tmp_path_factory.mktemp("keys") / "events.db"
    with TestClient(create_app(settings_for(serving_bundle, store))) as c:
        c.post("/v1/recommendations", json={"user_id": "u-keys", "k": 2})   # an exposure
        yield c


@pytest.fixture(scope="module")
def keyless(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[TestClient]:
    """No key configured at all, none in the environment either (the default is closed), and
    no CORS origin (the default)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_NAMES:
            mp.delenv(name, raising=False)
        settings = settings_for(serving_bundle, tmp_path_factory.mktemp("keyless") / "e.db",
                                keys={}, cors={})
        with TestClient(create_app(settings)) as c:
            yield c


def call(client: TestClient, operation: str, key: str | None, **kwargs: Any) -> Any:
    method, path, body, _, _ = ROUTES[operation]
    if body == "reload":
        body = {"bundle": "default",
                "path": str(client.app.state.settings.bundles["default"])}  # type: ignore[attr-defined]
    elif callable(body):
        body = body()
    headers = {} if key is None else {"X-API-Key": key}
    return client.request(method, path, json=body, headers=headers, **kwargs)


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("operation", list(ROUTES))
def test_every_route_answers_each_key_as_documented(client: TestClient, operation: str,
                                                   key: str) -> None:
    _, _, _, role, success = ROUTES[operation]
    r = call(client, operation, KEYS[key])
    if key in ACCEPTED[role]:
        assert r.status_code == success, r.text
    else:
        assert r.status_code == 401, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "X-API-Key" in r.json()["detail"]
    if key != "admin":
        assert SALT not in r.text


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("operation", list(ROUTES))
def test_without_any_key_configured_protected_routes_answer_503(keyless: TestClient,
                                                                operation: str,
                                                                key: str) -> None:
    _, _, _, role, success = ROUTES[operation]
    r = call(keyless, operation, KEYS[key])
    if role is None:
        assert r.status_code == success, r.text
    else:
        assert r.status_code == 503, r.text
        assert "RECSYS_ADMIN_KEY" in r.json()["detail"]    # names what to set


def test_a_role_without_its_own_key_takes_only_the_admin_key(serving_bundle: Path,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    settings = settings_for(serving_bundle, tmp_path / "e.db", keys={"admin": ADMIN_KEY})
    with TestClient(create_app(settings)) as c:
        for operation in ("ingestEvents", "listExperiments", "metrics"):
            for key in ("write", "read", "dashboard", "wrong", "none"):
                assert call(c, operation, KEYS[key]).status_code == 401, (operation, key)
            assert call(c, operation, ADMIN_KEY).status_code == ROUTES[operation][4]


def test_the_matrix_is_the_openapi_document(client: TestClient) -> None:
    """Each route's role above is the one its OpenAPI operation declares, so the matrix covers
    what clients are told; operations added later are checked by the test below."""
    spec = client.get("/openapi.json").json()
    declared = {op["operationId"]: op.get("security")
                for path in spec["paths"].values() for op in path.values()}
    for operation, (_, _, _, role, _) in ROUTES.items():
        schemes = {f"{k}Key" for k in ACCEPTED[role]} if role else set()
        assert {s for req in declared[operation] or [] for s in req} == schemes, operation


def test_every_secured_operation_refuses_the_keys_it_does_not_declare(
        client: TestClient) -> None:
    """From the OpenAPI document, so routes added after this matrix (e.g. the dashboard's) are
    covered too: a missing, wrong or other role's key is a 401, and a key the operation declares
    is never answered 401/403/503 (whatever the empty body or placeholder path then gives)."""
    spec = client.get("/openapi.json").json()
    checked = 0
    for template, operations in spec["paths"].items():
        for method, op in operations.items():
            if not op.get("security"):
                continue
            checked += 1
            path = template.replace("{", "").replace("}", "")    # {name} -> name
            accepted = {s.removesuffix("Key") for req in op["security"] for s in req}
            for key, value in KEYS.items():
                r = client.request(method.upper(), path,
                                   headers={} if value is None else {"X-API-Key": value})
                if key in accepted:
                    assert r.status_code not in (401, 403, 503), (method, template, key)
                else:
                    assert r.status_code == 401, (method, template, key, r.text)
    assert checked >= sum(1 for spec in ROUTES.values() if spec[3])


def test_salts_only_with_the_admin_key(client: TestClient) -> None:
    name = EXPERIMENT["name"]
    for key in ("read", "admin"):
        headers = {"X-API-Key": KEYS[key]}
        listed = client.get("/v1/experiments", headers=headers).json()["experiments"]
        detail = client.get(f"/v1/experiments/{name}", headers=headers).json()
        expected = SALT if key == "admin" else None
        assert [e["salt"] for e in listed] == [expected]
        assert detail["salt"] == expected


@pytest.mark.parametrize("operation", [op for op, spec in ROUTES.items() if spec[3]])
def test_a_key_outside_the_header_is_never_read(client: TestClient, operation: str) -> None:
    method, path, _, role, _ = ROUTES[operation]
    sep = "&" if "?" in path else "?"
    for param in ("api_key", "apikey", "key", "X-API-Key", "x-api-key", "token"):
        for key in ACCEPTED[role]:
            value = KEYS[key]
            r = client.request(method, f"{path}{sep}{param}={value}")
            assert r.status_code == 401, (param, key, r.text)
    client.cookies.set("X-API-Key", ADMIN_KEY)
    try:
        assert call(client, operation, None).status_code == 401
    finally:
        client.cookies.clear()


# ---------------------------------------------------------------------- CORS
def test_cors_allows_the_configured_origin_only(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-api-key"}
    r = client.options("/v1/events", headers={"Origin": ORIGIN, **preflight})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
    simple = client.post("/v1/recommendations", json={"k": 2}, headers={"Origin": ORIGIN})
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == ORIGIN

    other = "https://other.example"
    r = client.options("/v1/events", headers={"Origin": other, **preflight})
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert "origin" in r.json()["detail"]
    simple = client.post("/v1/recommendations", json={"k": 2}, headers={"Origin": other})
    assert simple.status_code == 200           # the browser, not the server, withholds it
    assert "access-control-allow-origin" not in simple.headers


def test_no_origin_is_allowed_by_default(keyless: TestClient) -> None:
    r = keyless.options("/v1/recommendations", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = keyless.post("/v1/recommendations", json={"k": 2}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
