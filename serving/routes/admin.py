"""Admin endpoints, behind the admin key (``X-API-Key``): bundle reload and user erasure.

Each process (uvicorn worker, replica) holds its own bundles, and every process sharing the
event store follows what one is told: a reload is recorded in the store's control log and
applied by the others within ``control_poll_s`` (:mod:`serving.replicas`); an erasure is
recorded in the audit log and applied by the others within ``erasure_poll_s``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi import Path as PathParam

from recsys.errors import RecsysError
from serving.auth import require_admin
from serving.deps import StateDep
from serving.replicas import record_reload
from serving.schemas import MAX_TEXT, NO_NUL, DeleteUserOut, ReloadIn, ReloadOut
from serving.state import load_serving_bundle, settle_heap

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/admin/reload", response_model=ReloadOut, operation_id="reloadBundle",
             responses={404: {"description": "unknown bundle name"},
                        409: {"description": "another reload is running"},
                        422: {"description": "the path is not a loadable bundle (the reason "
                                             "names the file or field); the old bundle stays"}})
def reload_bundle(body: ReloadIn, state: StateDep) -> ReloadOut:
    """Load the bundle at ``path`` and make it the bundle called ``bundle``.

    The new HybridRecommender is loaded and warmed up completely while the old one keeps serving;
    then one reference is swapped. Requests already running finish on the old bundle, so no
    request fails. The reload is then recorded in the store's control log: every other worker
    and replica of the store loads the same path within ``control_poll_s`` (the path must be
    reachable from all of them), and a process started later serves it too. The settings file
    is not changed.
    Whatever fails while loading (a missing file, a checksum, a malformed manifest) is a 422
    naming it, and the old bundle keeps serving.
    """
    if body.bundle not in state.bundles:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"unknown bundle {body.bundle!r} (known: {', '.join(state.bundles)})")
    if not state.reload_lock.acquire(blocking=False):
        raise HTTPException(status.HTTP_409_CONFLICT, "another reload is running; retry later")
    try:
        started = time.perf_counter()
        try:
            new = load_serving_bundle(body.bundle, Path(body.path), state.store,
                                      state.settings.warmup_requests)
        except (RecsysError, OSError, ValueError) as exc:
            state.metrics.reloads.labels(body.bundle, "failed").inc()
            raise HTTPException(422, f"cannot load bundle from {body.path!r}: {exc}") from None
        except Exception as exc:  # a malformed bundle the loader did not foresee: still a 422
            log.exception("reload of %r from %r failed", body.bundle, body.path)
            state.metrics.reloads.labels(body.bundle, "failed").inc()
            raise HTTPException(422, f"cannot load bundle from {body.path!r}: "
                                f"{type(exc).__name__}: {exc}") from None
        old = state.swap(new)
        state.metrics.reloads.labels(body.bundle, "ok").inc()
        control_id = record_reload(state, new)
        settle_heap()
    finally:
        state.reload_lock.release()
    return ReloadOut(bundle=body.bundle, path=str(new.path), previous_version=old.version,
                     model_version=new.version,
                     load_seconds=round(time.perf_counter() - started, 3),
                     control_id=control_id)


@router.delete("/users/{user_id}", response_model=DeleteUserOut, operation_id="eraseUser")
def delete_user(user_id: Annotated[str, PathParam(min_length=1, max_length=MAX_TEXT,
                                                  pattern=NO_NUL)],
                state: StateDep) -> DeleteUserOut:
    """Erase a user: their events and exposures from the store, and the events and exposures
    of every session they used (an anonymous session that logged in is theirs), with an audit
    record holding a keyed hash of the id; their history from every loaded bundle, and their
    ALS factor (zeroed; the aggregates the model learnt from all users stay until the next
    retrain)."""
    counts, erased = state.erase_user(user_id)
    return DeleteUserOut(user_id=user_id, events=counts.get("events", 0),
                         exposures=counts.get("exposures", 0),
                         sessions=counts.get("sessions", 0),
                         history_dropped=[name for name, e in erased.items() if e.history],
                         factors_zeroed=[name for name, e in erased.items() if e.factors])
