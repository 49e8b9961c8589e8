"""Admin endpoints, behind the ``X-API-Key`` header: bundle reload and user erasure.

With several uvicorn workers each process holds its own bundles: a reload reaches the one
worker that answers it (restart the server to switch all), while an erasure reaches all of them
(each worker applies the store's audit log every ``erasure_poll_s``).
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, status

from recsys.errors import RecsysError
from serving.deps import AdminDep, StateDep
from serving.schemas import DeleteUserOut, ReloadIn, ReloadOut
from serving.state import load_serving_bundle, settle_heap

router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[AdminDep],
                   responses={401: {"description": "missing or wrong X-API-Key"},
                              503: {"description": "admin API disabled (no key configured)"}})


@router.post("/admin/reload", response_model=ReloadOut,
             responses={404: {"description": "unknown bundle name"},
                        409: {"description": "another reload is running"},
                        422: {"description": "the path is not a loadable bundle"}})
def reload_bundle(body: ReloadIn, state: StateDep) -> ReloadOut:
    """Load the bundle at ``path`` and make it the bundle called ``bundle``.

    The new HybridRecommender is loaded and warmed up completely while the old one keeps serving;
    then one reference is swapped. Requests already running finish on the old bundle, so no
    request fails. The settings file is not changed: a restart loads the configured path.
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
        except (RecsysError, OSError) as exc:
            state.metrics.reloads.labels(body.bundle, "failed").inc()
            raise HTTPException(422, f"cannot load bundle from {body.path!r}: {exc}") from None
        old = state.swap(new)
        state.metrics.reloads.labels(body.bundle, "ok").inc()
        settle_heap()
    finally:
        state.reload_lock.release()
    return ReloadOut(bundle=body.bundle, path=str(new.path), previous_version=old.version,
                     model_version=new.version,
                     load_seconds=round(time.perf_counter() - started, 3))


@router.delete("/users/{user_id}", response_model=DeleteUserOut)
def delete_user(user_id: str, state: StateDep) -> DeleteUserOut:
    """Erase a user: their events and exposures from the store (with an audit record holding a
    hash of the id), their history from every loaded bundle, and their ALS factor (zeroed; the
    aggregates the model learnt from all users stay until the next retrain)."""
    counts, erased = state.erase_user(user_id)
    return DeleteUserOut(user_id=user_id, events=counts.get("events", 0),
                         exposures=counts.get("exposures", 0),
                         history_dropped=[name for name, e in erased.items() if e.history],
                         factors_zeroed=[name for name, e in erased.items() if e.factors])
