"""One error shape for every 4xx and 5xx: RFC 9457 problem details, ``application/problem+json``.

``{"type": "about:blank", "title": "Unprocessable Content", "status": 422, "detail": "...",
"instance": "/v1/recommendations"}``, plus extension members where they help a client:
``errors`` (one entry per bad field, ``loc`` naming it) on a 422, and the batch counts of
``POST /v1/events``. Domain errors become 4xx with their message (``DataError`` 422, other
:class:`~recsys.errors.RecsysError` 400); anything else is a bug, logged with its traceback and
answered as a 500 problem without internals.

Client input never reaches the 500 path on purpose: schemas and limits reject malformed
requests with 422 before any work is done.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.errors import DataError, RecsysError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def title_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, detail: str, *, instance: str | None = None,
                 **extensions: Any) -> bytes:
    """The encoded problem document. ASCII-escaped, so text echoed from a client (even a lone
    surrogate it sent) always encodes; non-finite numbers become null."""
    body: dict[str, Any] = {"type": "about:blank", "title": title_of(status), "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return json.dumps(_finite(body), ensure_ascii=True, default=str,
                      separators=(",", ":")).encode("ascii")


def problem(status: int, detail: str, *, instance: str | None = None,
            headers: Mapping[str, str] | None = None, **extensions: Any) -> Response:
    return Response(problem_body(status, detail, instance=instance, **extensions),
                    status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI/pydantic error dicts -> ``{"loc", "type", "msg", "input"}`` (no URLs; the
    ``ctx`` objects become text)."""
    out = []
    for err in errors:
        entry = {"loc": list(err.get("loc", ())), "type": err.get("type", "invalid"),
                 "msg": err.get("msg", "")}
        if "input" in err:
            entry["input"] = err["input"]
        if err.get("ctx"):
            entry["ctx"] = {str(k): v if isinstance(v, (int, float, str, bool)) else str(v)
                            for k, v in err["ctx"].items()}
        out.append(entry)
    return out


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line naming the first bad field(s): ``body.k: Input should be ... (and 2 more)``."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), instance=request.url.path,
                   headers=exc.headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    return problem(422, describe(errors), instance=request.url.path, errors=errors)


async def recsys_error(request: Request, exc: Exception) -> Response:
    code = 422 if isinstance(exc, DataError) else 400
    return problem(code, str(exc), instance=request.url.path)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal server error (logged on the server)",
                   instance=request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(RecsysError, recsys_error)
    app.add_exception_handler(Exception, unexpected_error)
