"""``/healthz`` (the process answers), ``/readyz`` (bundles loaded) and ``/metrics``."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.auth import require_read
from serving.schemas import HealthOut, ReadyOut
from serving.state import ServingState

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, operation_id="healthz")
async def healthz() -> HealthOut:
    """Liveness: 200 while the process serves HTTP, even before the bundles are loaded."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, operation_id="readyz",
            responses={503: {"model": ReadyOut, "description": "not ready (loading, shutting "
                             "down, or the exposure writer died)"}})
async def readyz(request: Request) -> ReadyOut | JSONResponse:
    """Readiness: 200 once every bundle is loaded and the exposure writer runs; 503 before,
    during shutdown, or when the writer has died."""
    state: ServingState | None = getattr(request.app.state, "serving", None)
    if state is None or not state.ready or not state.exposures.alive:
        body = ReadyOut(status="not ready", bundles={} if state is None else {
            n: b.version for n, b in state.bundles.items()}, worker_pid=os.getpid())
        return JSONResponse(body.model_dump(), status_code=503)
    return ReadyOut(status="ready", bundles={n: b.version for n, b in state.bundles.items()},
                    worker_pid=os.getpid())


@router.get("/metrics", response_class=Response, operation_id="metrics",
            dependencies=[Depends(require_read)],
            responses={200: {"description": "Prometheus text format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format, needs the read key: this app instance's registry, or with
    several workers (``PROMETHEUS_MULTIPROC_DIR``) the merge of every worker's."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
