"""The OpenAPI document clients generate from: one problem schema for every error answer, the
deployment's limits in the request schemas, and the statuses each operation can answer.

FastAPI builds the document from the routes; :func:`finish` then

* gives every 4xx/5xx response the ``application/problem+json`` content of
  :class:`~serving.schemas.Problem` (``EventBatchProblem`` for the events' 422) and drops
  FastAPI's own ``HTTPValidationError``, which this API never sends;
* adds the statuses every route of its kind can answer: 500 (a bug), 503 (not ready; a role
  without a key), 401 (protected routes), 413 and 422 (routes with a body);
* writes the limits of ``[limits]`` into the schemas (``k`` maximum, list ``maxItems``), so a
  generated client and a fuzzer know them; the handlers check the same numbers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from serving.errors import PROBLEM_JSON, title_of
from serving.schemas import EventBatchProblem, Problem
from serving.settings import Limits

REF = "#/components/schemas/{model}"
_ALWAYS = ("500",)
_WITH_STATE = ("503",)


def _problem_content(model: str) -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": REF.format(model=model)}}}


def _set_max(schema: dict[str, Any], model: str, prop: str, key: str, value: int) -> None:
    target = schema["components"]["schemas"].get(model, {}).get("properties", {}).get(prop)
    if target is None:
        raise KeyError(f"OpenAPI: {model}.{prop} not found")   # a renamed field: fail loudly
    target[key] = value


def finish(schema: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Post-process FastAPI's document in place (see the module docstring); returns it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, EventBatchProblem):
        body = model.model_json_schema(ref_template=REF)
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            extra = list(_ALWAYS)
            if path.startswith("/v1/") or op.get("security"):
                extra += _WITH_STATE
            if op.get("security"):
                extra.append("401")
            if "requestBody" in op:
                extra += ["413", "422", "400"]   # 400: an unreadable Content-Length
            for code in extra:
                responses.setdefault(code, {"description": title_of(int(code))})
            for code, response in responses.items():
                if code[0] not in "45" or (op.get("operationId") == "readyz" and code == "503"):
                    continue
                name = ("EventBatchProblem" if op.get("operationId") == "ingestEvents"
                         and code == "422" else "Problem")
                response["content"] = _problem_content(name)
                if response.get("description") == "Validation Error":
                    response["description"] = "malformed request or over a limit"
    _set_max(schema, "RecommendationRequest", "k", "maximum", limits.max_k)
    _set_max(schema, "ContextIn", "cart", "maxItems", limits.max_cart)
    _set_max(schema, "ContextIn", "recent_views", "maxItems", limits.max_recent_views)
    _set_max(schema, "FiltersIn", "categories", "maxItems", limits.max_filter_values)
    _set_max(schema, "FiltersIn", "exclude_items", "maxItems", limits.max_filter_values)
    _set_max(schema, "EventBatchIn", "events", "maxItems", limits.max_batch)
    similar = schema["paths"]["/v1/items/{item_id}/similar"]["get"]
    for param in similar.get("parameters", []):
        if param["name"] == "k":
            param["schema"]["maximum"] = limits.max_k
    return schema


def install_openapi(app: FastAPI, limits: Limits) -> None:
    """Serve the finished document at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(get_openapi(
                title=app.title, version=app.version, summary=app.summary,
                description=app.description, routes=app.routes), limits)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
