"""Dependencies of the route handlers, as ``Annotated`` aliases (``state: StateDep``).

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its threadpool,
a thread hop per request for what is only an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from serving.settings import Limits
from serving.state import ServingState


async def get_state(request: Request) -> ServingState:
    """The app's state; 503 before the lifespan has loaded the bundles (or after shutdown)."""
    state: ServingState | None = getattr(request.app.state, "serving", None)
    if state is None or not state.ready:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "not ready: the bundles are not loaded")
    return state


StateDep = Annotated[ServingState, Depends(get_state)]


async def get_limits(state: StateDep) -> Limits:
    return state.settings.limits


LimitsDep = Annotated[Limits, Depends(get_limits)]
