"""``POST /v1/recommendations`` and ``GET /v1/items/{item_id}/similar``.

``async def`` handlers that compute on the event loop's thread, on purpose. The work is 1-2 ms
of CPU-bound numpy/FAISS/LightGBM that holds the GIL most of the time, so the threadpool added
no parallelism, only a thread hop per request and GIL hand-offs between the loop and its
workers. It also put FAISS out of reach of the one-thread policy: ``omp_set_num_threads`` is per
calling thread, and a pool thread reported OpenMP's default (2 threads here). Throughput comes
from uvicorn workers, one per core. Measurements: docs/api.md, "Performance notes".

The response is serialised once, by pydantic-core, straight to bytes: ``response_model`` stays
for the OpenAPI schema, but FastAPI does not validate and re-encode what the service built.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from serving import service
from serving.deps import StateDep
from serving.limits import k_errors, recommendation_errors
from serving.metrics import FALLBACK_KEY, SERVED_KEY, VARIANT_KEY
from serving.schemas import (
    MAX_TEXT,
    RecommendationRequest,
    RecommendationResponse,
    SimilarItemsResponse,
)
from serving.settings import DEFAULT_BUNDLE

router = APIRouter(prefix="/v1", tags=["recommendations"])
RECOMMENDATIONS_PATH = "/v1/recommendations"


@router.post("/recommendations", response_model=RecommendationResponse,
             operation_id="recommend",
             responses={422: {"description": "malformed request, over a limit, or refused by "
                                             "the recommender"}})
async def recommendations(body: RecommendationRequest, request: Request,
                          state: StateDep) -> Response:
    """Top-k items for a user or an anonymous session, with reasons.

    The experiment variant (if the user or session falls in an active experiment) picks the
    bundle and pipeline; the exposure is logged for the experiment readout. Unknown cart or
    viewed items are ignored and listed in ``warnings``; an unknown user gets the
    popularity/context fallback with ``fallback: true``.
    """
    errors = recommendation_errors(body, state.settings.limits)
    if errors:
        raise RequestValidationError(errors)
    arm, response = service.recommend(state, body)
    setattr(request.state, VARIANT_KEY, arm.label)
    setattr(request.state, FALLBACK_KEY, response.fallback)
    setattr(request.state, SERVED_KEY, tuple(item.item_id for item in response.items))
    return json_response(response)


@router.get("/items/{item_id}/similar", response_model=SimilarItemsResponse,
            operation_id="similarItems", responses={404: {"description": "unknown item"}})
async def similar_items(item_id: Annotated[str, Path(min_length=1, max_length=MAX_TEXT)],
                        state: StateDep,
                        k: Annotated[int, Query(ge=1, description="1..max_k (100)")] = 10
                        ) -> Response:
    """Items like ``item_id`` (content and CF similarity), in stock; for product pages."""
    errors = k_errors(k, state.settings.limits)
    if errors:
        raise RequestValidationError(errors)
    bundle = state.bundles[DEFAULT_BUNDLE]
    rec = bundle.recommender
    if item_id not in rec.items:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown item_id {item_id!r}")
    return json_response(SimilarItemsResponse(
        item_id=item_id, model_version=bundle.version,
        items=service.items_out(rec.similar_items(item_id, k))))


def json_response(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")
