"""``POST /v1/events``: a batch of user events, acknowledged (202) once committed."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving import service
from serving.deps import StateDep
from serving.limits import batch_errors
from serving.schemas import EventBatchIn, EventBatchResponse

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", status_code=status.HTTP_202_ACCEPTED, response_model=EventBatchResponse,
             responses={422: {"model": EventBatchResponse,
                              "description": "no valid event in the batch (nothing stored), "
                                             "or the body itself is malformed / too long"}})
def ingest(body: EventBatchIn, state: StateDep) -> EventBatchResponse | JSONResponse:
    """Store a batch of events (impression, view, click, add_to_cart, purchase).

    Each event is validated on its own: the valid ones are stored in one transaction and the
    response (202) lists the others by index, field and message. 202 is sent only after the
    commit (fsync), so an acknowledged event survives a crash. A repeated ``event_id`` is
    counted as a duplicate and not stored again, so retrying a batch is safe. If no event is
    valid, nothing is stored and the answer is 422 with the same body.
    """
    errors = batch_errors(len(body.events), state.settings.limits)
    if errors:
        raise RequestValidationError(errors)
    result = service.ingest_events(state, body.events)
    if result.rejected == result.received:
        return JSONResponse(result.model_dump(mode="json"),
                            status_code=422)
    return result
