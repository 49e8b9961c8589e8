"""Starlette's CORS middleware, with its refusals in the API's one error shape.

A browser's preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from
an origin, method or header the allow-list does not name is answered 400 by Starlette as
``text/plain`` "Disallowed CORS origin"; here it is the same 400 as an RFC 9457 problem
(``serving.errors``), like every other 4xx of the API. Allowed preflights and the headers on
ordinary requests are Starlette's, unchanged.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.responses import Response

from serving.errors import problem

ALLOW_LIST = "[cors] allow_origins"


class CORSMiddleware(StarletteCORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode("utf-8", "replace")   # "Disallowed CORS origin"
        # keep the CORS headers Starlette set (Vary, the allowed methods and headers); the body
        # and its length are the problem's
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        return problem(response.status_code,
                       f"{refused} (cross-origin calls are allowed from the origins in "
                       f"{ALLOW_LIST} of the server's config)", headers=headers)
