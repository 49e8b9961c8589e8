"""``GET /v1/monitoring``: drift and health of this worker's live traffic against the served
bundle's training snapshot (:mod:`serving.monitoring`), evaluated on the spot; read key.
``recsys monitor --server URL`` renders it as HTML and JSON."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel

from serving.auth import require_read
from serving.deps import StateDep

router = APIRouter(prefix="/v1", tags=["monitoring"], dependencies=[Depends(require_read)])


class CheckOut(BaseModel):
    name: str
    value: float | None
    threshold: float | None
    bound: str            # "max": alert above the threshold; "min": below
    firing: bool
    detail: str


class MonitoringOut(BaseModel):
    at: str
    worker_pid: int
    bundle_version: str | None
    rows: int
    alert: bool
    firing: list[str]
    psi: dict[str, float]
    histograms: dict[str, dict[str, list[float]]]
    health: dict[str, float | int | None]
    events: dict[str, float | int | None]
    checks: list[CheckOut]
    psi_ignored: list[str]     # features whose PSI is shown but raises no alert


@router.get("/monitoring", response_model=MonitoringOut, operation_id="monitoring",
            responses={503: {"description": "monitoring is off ([monitoring] enabled = false)"}})
def monitoring(request: Request, state: StateDep) -> MonitoringOut:
    """Every check now: PSI per ranker feature and of the score, coverage, popularity
    concentration, fallback rate, unknown-item rate, ingest lag, each with its threshold and
    whether its alert fires. One worker's window (each worker keeps its own)."""
    monitor = state.monitor
    if monitor is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "monitoring is off ([monitoring] enabled = false)")
    return MonitoringOut.model_validate(monitor.evaluate(state).to_json())
