"""Exception handlers: domain errors become 4xx JSON with their message; anything else is a bug
and becomes a JSON 500 (logged with its traceback) instead of a plain-text page.

Client input never reaches the 500 path on purpose: schemas and limits reject malformed
requests with 422, the recommender raises :class:`~recsys.errors.DataError` for what it refuses
(an unknown item, a bad k), which is a 422 here; other :class:`~recsys.errors.RecsysError` (a
broken bundle named in a reload, a bad config) are 400.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from recsys.errors import DataError, RecsysError

log = logging.getLogger(__name__)


async def recsys_error(request: Request, exc: Exception) -> JSONResponse:
    code = (422 if isinstance(exc, DataError)
            else status.HTTP_400_BAD_REQUEST)
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error (logged on the server)"},
                        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RecsysError, recsys_error)
    app.add_exception_handler(Exception, unexpected_error)
