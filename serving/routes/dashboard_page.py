"""The dashboard page, ``GET /dashboard``, and its static files, ``GET /dashboard/assets/NAME``.

Plain files shipped as package data (``serving/dashboard/``): one HTML page, ES modules and a
stylesheet, no build step and nothing fetched from elsewhere. The page draws everything in the
browser from the JSON endpoints of :mod:`serving.routes.dashboard`. Behind the dashboard key
like those (a browser asks for it once, HTTP Basic; see :mod:`serving.auth`), and outside the
OpenAPI document, which describes the JSON API.

The Content-Security-Policy allows scripts, styles and requests from this origin only, so
neither a CDN nor an injected inline script can run; the page also builds its DOM with text
nodes only (``textContent``), never HTML from data.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status

from serving.auth import require_dashboard

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_dashboard)])

PAGE = "index.html"
ASSETS = {   # name -> media type; nothing else is served from the folder
    "app.js": "text/javascript; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "experiments.js": "text/javascript; charset=utf-8",
    "health.js": "text/javascript; charset=utf-8",
    "storefront.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",     # revalidate: a new version of the server shows at once
}


@cache
def read_asset(name: str) -> bytes:
    """A file of the dashboard folder (read once per process)."""
    return resources.files("serving").joinpath("dashboard", name).read_bytes()


@router.get("/dashboard")
async def page() -> Response:
    """The dashboard (views: ``#experiments``, ``#health``, ``#storefront``)."""
    return Response(read_asset(PAGE), media_type="text/html; charset=utf-8",
                    headers=SECURITY_HEADERS)


@router.get("/dashboard/assets/{name}")
async def asset(name: Annotated[str, Path(max_length=64)]) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard asset {name!r}")
    return Response(read_asset(name), media_type=media_type, headers=SECURITY_HEADERS)
