"""``POST /v1/events``: a batch of user events, acknowledged (202) once committed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError

from serving import service
from serving.auth import require_write
from serving.deps import StateDep
from serving.errors import problem
from serving.limits import batch_errors
from serving.schemas import EventBatchIn, EventBatchResponse

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", status_code=status.HTTP_202_ACCEPTED, response_model=EventBatchResponse,
             operation_id="ingestEvents", dependencies=[Depends(require_write)],
             responses={422: {"description": "at least one event was rejected (the valid ones "
                                             "are stored; the body lists the others), or the "
                                             "body itself is malformed / too long"}})
def ingest(body: EventBatchIn, request: Request, state: StateDep) -> EventBatchResponse | Response:
    """Store a batch of events (impression, view, click, add_to_cart, purchase); needs the
    write key.

    Each event is validated on its own and the valid ones are stored in one transaction. 202
    (every event stored or a duplicate) is sent only after the commit (fsync), so an
    acknowledged event survives a crash. If any event is rejected the answer is a 422 problem
    listing each bad event by index, field and message, with the batch counts: the valid
    events of that batch are stored all the same. A repeated ``event_id`` is counted as a
    duplicate and not stored again, so retrying a whole batch is always safe.
    """
    errors = batch_errors(len(body.events), state.settings.limits)
    if errors:
        raise RequestValidationError(errors)
    result = service.ingest_events(state, body.events)
    if result.rejected:
        stored = (f"{result.inserted} stored, {result.duplicates} duplicate(s)"
                  if result.inserted or result.duplicates else "nothing stored")
        return problem(422, f"{result.rejected} of {result.received} event(s) rejected; "
                       f"{stored}; first problem: event {result.errors[0].index} "
                       f"{result.errors[0].field or ''}: {result.errors[0].message}",
                       instance=request.url.path, **result.model_dump(mode="json"))
    return result
