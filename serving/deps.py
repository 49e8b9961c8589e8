"""Dependencies of the route handlers, as ``Annotated`` aliases (``state: StateDep``).

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its threadpool,
a thread hop per request for what is only an attribute lookup.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from serving.settings import Limits
from serving.state import ServingState

API_KEY_HEADER = "X-API-Key"


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


async def require_admin(state: StateDep,
                        x_api_key: Annotated[str | None, Header(alias=API_KEY_HEADER)] = None
                        ) -> None:
    """401 unless the ``X-API-Key`` header holds the admin key (compared in constant time)."""
    if state.admin_key is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"admin API disabled: no key configured (set the environment "
                            f"variable {state.settings.admin.api_key_env})")
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(),
                                                       state.admin_key.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            f"missing or wrong {API_KEY_HEADER} header")


AdminDep = Depends(require_admin)
