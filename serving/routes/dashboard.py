"""The dashboard's JSON endpoints, ``/v1/dashboard/*``: read-only, dashboard or admin key (in
``X-API-Key`` or as the HTTP Basic password, see :mod:`serving.auth`).

| operation | what the page shows from it |
|---|---|
| ``dashboardExperiments`` | every experiment: status, traffic, variants, live counts |
| ``dashboardExperimentResults`` | the readout (``recsys experiment report``'s code) |
| ``dashboardHealth`` | champion from its manifest, live window of served lists |
| ``dashboardShoppers`` / ``dashboardShopper`` | shoppers to pick, what one bought |
| ``dashboardPreviewOptions`` / ``dashboardPreview`` | surfaces, arms; the preview's cards |

The preview runs the code of ``POST /v1/recommendations`` (``service.recommend``) with
``record=False``: no exposure, no recommendation metrics, no guardrail or window sample.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from serving import dashboard_data as data
from serving import service
from serving.auth import require_dashboard
from serving.dashboard_schema import (
    DashboardExperiments,
    ModelHealth,
    PreviewIn,
    PreviewOptions,
    PreviewOut,
    ShopperList,
    ShopperOut,
)
from serving.deps import StateDep
from serving.health import ServedWindow
from serving.limits import recommendation_errors
from serving.readout_schema import ExperimentReadout
from serving.routes.experiments import ExperimentName, find, live_detail, readout
from serving.routes.recommendations import json_response
from serving.schemas import MAX_TEXT
from serving.settings import DEFAULT_BUNDLE

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"],
                   dependencies=[Depends(require_dashboard)])
DASHBOARD_ROLE = "dashboard"    # what the dashboard shows: never the experiments' salts
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown experiment or variant"}}


def served_window(request: Request) -> ServedWindow:
    window: ServedWindow = request.app.state.served_window
    return window


@router.get("/experiments", response_model=DashboardExperiments,
            operation_id="dashboardExperiments")
def experiments(state: StateDep) -> DashboardExperiments:
    """Every experiment (active or not) with its traffic, variants and, per variant, stored
    units, exposures and attributed events and this worker's live guardrails."""
    state.exposures.flush(timeout=2.0)
    return DashboardExperiments(experiments=[live_detail(state, e, DASHBOARD_ROLE)
                                             for e in state.experiments.experiments])


@router.get("/experiments/{name}/results", response_model=ExperimentReadout,
            operation_id="dashboardExperimentResults", responses=NOT_FOUND)
def experiment_results(name: ExperimentName, state: StateDep) -> ExperimentReadout:
    """The statistical readout, the same as ``GET /v1/experiments/{name}/results`` and
    ``recsys experiment report`` (one code path). Reads every event of the experiment: the page
    polls it every 30 s by default."""
    return readout(state, find(state, name))


@router.get("/health", response_model=ModelHealth, operation_id="dashboardHealth")
def health(state: StateDep, window: Annotated[ServedWindow, Depends(served_window)]
           ) -> ModelHealth:
    """The champion ('default' bundle) and every loaded bundle from their manifests, the model
    registry's champion pointer and the drift monitor's verdict (or why they are off), and this
    worker's window of recently served lists: request rate, latency percentiles, fallback
    rate, catalog coverage and the share of slots going to the top 1% of items, per arm."""
    return data.model_health(state, window)


@router.get("/shoppers", response_model=ShopperList, operation_id="dashboardShoppers")
def shoppers(state: StateDep,
             limit: Annotated[int, Query(ge=1, le=500, description="at most this many")] = 50
             ) -> ShopperList:
    """Shoppers of the champion's history with the most purchases (to pick in the preview)."""
    return data.shoppers(state.bundles[DEFAULT_BUNDLE].recommender, limit)


@router.get("/shoppers/{user_id}", response_model=ShopperOut, operation_id="dashboardShopper")
def shopper(user_id: Annotated[str, Path(min_length=1, max_length=MAX_TEXT)], state: StateDep
            ) -> ShopperOut:
    """What the shopper bought before: the champion's history and purchases stored since.
    An unknown shopper is not an error (``known: false``): the preview serves them the
    fallback, as the shop's endpoint would."""
    return data.shopper(state, user_id)


@router.get("/preview/options", response_model=PreviewOptions,
            operation_id="dashboardPreviewOptions")
async def preview_options(state: StateDep) -> PreviewOptions:
    """What the preview can ask: the request's surfaces (read from its schema; empty when it
    has none), the largest k, and the experiments' variants."""
    return data.preview_options(state)


@router.post("/preview", response_model=PreviewOut, operation_id="dashboardPreview",
             responses={**NOT_FOUND, 422: {"description": "a request the shop's endpoint "
                                                          "would refuse too"}})
async def preview(body: PreviewIn, state: StateDep) -> Response:
    """The list ``POST /v1/recommendations`` would answer for ``request`` (the same code),
    from the assigned arm, the default one, or a chosen variant, as cards with the catalog's
    title, category and price. Nothing is recorded: no exposure, no metrics.

    ``async`` like the shop's endpoint, for the same reason: the recommender computes on the
    event loop's thread, under the one-thread policy.
    """
    errors = recommendation_errors(body.request, state.settings.limits)
    if errors:
        raise RequestValidationError([{**e, "loc": ("body", "request", *e["loc"][1:])}
                                      for e in errors])
    try:
        arm, assigned = data.preview_arm(state, body)
    except KeyError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.args[0]) from None
    arm, response = service.recommend(state, body.request, arm=arm, record=False)
    # the catalog of the bundle that answered (after a reload raced the request, an item it
    # no longer has shows with its id only)
    rec = state.bundles[arm.bundle].recommender
    return json_response(PreviewOut(
        arm=data.preview_arm_out(arm, assigned), model_version=response.model_version,
        fallback=response.fallback, items=data.preview_items(rec, response.items),
        warnings=response.warnings))
