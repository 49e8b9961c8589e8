"""Refuse a query parameter given more than once with a 422 problem naming it.

Every query parameter of the API is a scalar (``k``, ``limit``); given twice, FastAPI would
silently serve the last value (``?limit=&limit=6`` answered as if ``limit=6``). Pure ASGI, like
:mod:`serving.body_limit`: a request without a query string costs one dictionary lookup.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import PROBLEM_JSON, problem_body


class SingleQueryValues:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if raw:
            counts = Counter(k for k, _ in parse_qsl(raw.decode("latin-1"),
                                                      keep_blank_values=True))
            repeated = sorted(k for k, n in counts.items() if n > 1)
            if repeated:
                detail = "; ".join(f"query parameter {k!r} given {counts[k]} times (expected "
                                   "at most once)" for k in repeated)
                body = problem_body(422, detail)
                await send({"type": "http.response.start", "status": 422,
                            "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
