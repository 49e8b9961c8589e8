"""The API against its own OpenAPI document: schemathesis generates requests for every
operation (valid ones and invalid ones), sends them through the app, and runs every built-in
check on each answer: no 5xx, the status code, content type, headers and body as documented,
valid data accepted, invalid data rejected, auth enforced (``ignored_auth``).

Some rules a JSON schema cannot state; the generator is told about them, and only for valid
(positive) cases, so invalid data still reaches the server unchanged:

* an event's time lies between 1970 and one hour ahead of the server clock, a request's (and
  an item's ``first_seen``) between 1970 and 2262 (a schema can bound a number, not a
  date-time string): positive cases get a time in that window;
* ``price_min <= price_max`` in the filters: a positive request with both gets them in order;
* ``POST /v1/admin/reload`` loads a bundle from a path on the server: a positive case names
  the test bundle (a random path would rightly be a 422);
* ``POST /v1/dashboard/preview`` wraps a recommendation request: the same rules apply to it;
* ``PUT /v1/catalog/items`` names an item at most once per request (a schema cannot say that
  of one key of the list's objects): a positive case keeps the first change of each item.

Why schemathesis rather than hand-written cases: it derives the cases from the published
document, so the document and the server cannot drift apart unnoticed, and hypothesis shrinks
every failure to a minimal request.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from serving.app import create_app
from tests.serving.conftest import ADMIN_KEY

EXAMPLES = 200


@pytest.fixture(scope="module")
def fuzzed_app(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[FastAPI]:
    from serving.settings import ServingSettings
    from tests.serving.conftest import EXPERIMENT

    work = tmp_path_factory.mktemp("fuzz")
    app = create_app(ServingSettings.model_validate({
        "bundles": {"default": str(serving_bundle)}, "event_store": str(work / "events.db"),
        "experiments": [EXPERIMENT], "keys": {"admin": ADMIN_KEY}, "warmup_requests": 0,
        "erasure_poll_s": 0}))
    app.state.fuzz_bundle = str(serving_bundle)
    with TestClient(app):        # runs the lifespan: bundles loaded, store open
        yield app


def _fit_positive(case: Any, bundle: str) -> None:
    """Make a valid (positive) case meet the rules the schema cannot state (module docstring)."""
    body = case.body
    if not isinstance(body, dict):
        return
    if case.operation.path == "/v1/dashboard/preview":
        body = body.get("request")
        if not isinstance(body, dict):
            return
    if case.operation.path == "/v1/events" and isinstance(body.get("events"), list):
        now = datetime.now(UTC)
        for n, ev in enumerate(body["events"]):
            if isinstance(ev, dict) and "timestamp" in ev:
                ev["timestamp"] = (now - timedelta(seconds=n)).isoformat()
    context = body.get("context")
    if isinstance(context, dict) and context.get("timestamp") is not None:
        context["timestamp"] = datetime.now(UTC).isoformat()
    filters = body.get("filters")
    if isinstance(filters, dict):
        lo, hi = filters.get("price_min"), filters.get("price_max")
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
            filters["price_min"], filters["price_max"] = hi, lo
    if case.operation.path == "/v1/admin/reload":
        body["path"] = bundle
    if case.operation.path == "/v1/catalog/items" and isinstance(body.get("items"), list):
        seen: set[Any] = set()
        body["items"] = [c for c in body["items"] if not isinstance(c, dict)
                         or c.get("item_id") not in seen and not seen.add(c.get("item_id"))]
        for change in body["items"]:
            if isinstance(change, dict) and change.get("first_seen") is not None:
                change["first_seen"] = datetime.now(UTC).isoformat()




@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_contract(fuzzed_app: FastAPI, mode: GenerationMode) -> None:
    """Every operation, ``EXAMPLES`` generated requests each in this mode, every check."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    bundle = fuzzed_app.state.fuzz_bundle
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 22

    for operation in operations:
        raw = operation.definition.raw
        if not mode.is_positive and not raw.get("parameters") and "requestBody" not in raw:
            continue    # nothing a client sends can be invalid (GET /healthz...)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            if mode.is_positive:
                _fit_positive(case, bundle)
            case.call_and_validate(headers={"X-API-Key": ADMIN_KEY})

        run()
