"""What the endpoints do, without HTTP: pick the arm, recommend, log the exposure; validate and
store an event batch. Route handlers translate the results and errors into responses.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import ValidationError

from recsys.history import UserEvents
from recsys.recommender import HybridRecommender, Recommendation, Request
from recsys.rules import Filters
from serving.experiments import assign
from serving.exposures import Exposure
from serving.live import live_context, live_history, request_events
from serving.schemas import (
    EventBatchResponse,
    EventError,
    EventIn,
    ItemOut,
    RecommendationRequest,
    RecommendationResponse,
)
from serving.settings import DEFAULT_BUNDLE
from serving.state import LoadedBundle, ServingState

DEFAULT_PIPELINE = "hybrid"
DEFAULT_ARM = "default"   # metrics/guardrail label of requests in no experiment


@dataclass(frozen=True)
class Arm:
    """Which bundle and pipeline serve a request, and the experiment that decided it."""

    bundle: str
    pipeline: str
    experiment: str | None = None
    variant: str | None = None
    unit: str | None = None

    @property
    def label(self) -> str:
        return DEFAULT_ARM if self.experiment is None else f"{self.experiment}/{self.variant}"


def choose_arm(state: ServingState, user_id: str | None, session_id: str | None) -> Arm:
    """The first active experiment the unit falls in decides; otherwise the default bundle
    with the hybrid pipeline."""
    for exp in state.experiments.active_experiments():
        a = assign(exp, user_id, session_id)
        if a is not None:
            v = exp.variant(a.variant)
            return Arm(v.bundle or DEFAULT_BUNDLE, v.pipeline or DEFAULT_PIPELINE, a.experiment,
                       a.variant, a.unit)
    return Arm(DEFAULT_BUNDLE, DEFAULT_PIPELINE)


def serving_recommender(bundle: LoadedBundle, pipeline: str) -> HybridRecommender:
    rec = bundle.recommender
    # variant() is a shallow copy (microseconds); made per request, not cached, so it always
    # sees the bundle's current history after an erasure
    return rec if pipeline == rec.pipeline else rec.variant(pipeline)


def to_request(body: RecommendationRequest) -> Request:
    ctx, f = body.context, body.filters
    return Request(
        user_id=body.user_id, session_id=body.session_id,
        timestamp=None if ctx.timestamp is None else _utc(pd.Timestamp(ctx.timestamp)),
        device=ctx.device, cart=tuple(ctx.cart), current_item=ctx.current_item,
        recent_views=tuple(ctx.recent_views), k=body.k, surface=body.surface,
        filters=Filters(categories=tuple(f.categories), price_min=f.price_min,
                        price_max=f.price_max, exclude_items=tuple(f.exclude_items)))


def with_live(state: ServingState, rec: HybridRecommender, body: RecommendationRequest,
              request: Request) -> tuple[Request, UserEvents | None]:
    """The request with the live state (:mod:`serving.live`): the history with the shopper's
    events since the bundle, and the session's cart and recent views where the request sends
    none (a context field it sends wins)."""
    if not len(state.live):
        return request, None
    events, session = request_events(state.live, body.user_id, body.session_id)
    if not events:
        return request, None
    now = None if request.timestamp is None else int(request.timestamp.timestamp())
    history = live_history(rec, body.user_id, events, before=now)
    sent = body.context.model_fields_set
    if "cart" in sent and "recent_views" in sent:
        return request, history
    if session:
        since = None        # the session's events are the session, whatever their age
    else:                   # a user's: their recent ones
        session = events
        since = int((time.time() if now is None else now) - state.settings.live.session_window_s)
    limits = state.settings.limits
    ctx = live_context(session, since=since, before=now, max_cart=limits.max_cart,
                       max_views=limits.max_recent_views)
    cart = ctx.cart if "cart" not in sent and ctx.cart else request.cart
    views = (ctx.recent_views if "recent_views" not in sent and ctx.recent_views
             else request.recent_views)
    return dataclasses.replace(request, cart=cart, recent_views=views), history


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def items_out(recs: Sequence[Recommendation]) -> list[ItemOut]:
    return [ItemOut(item_id=r.item_id, score=r.score if math.isfinite(r.score) else None,
                    rank=r.rank, reasons=r.reasons) for r in recs]


def recommend(state: ServingState, body: RecommendationRequest, *, arm: Arm | None = None,
              record: bool = True) -> tuple[Arm, RecommendationResponse]:
    """Serve one request; raises DataError (-> 422) for a request the recommender refuses.

    ``arm`` overrides the experiments' choice and ``record=False`` leaves no trace (no
    exposure, no recommendation metrics): the dashboard's storefront preview, which must show
    what a shop would get without counting as traffic.
    """
    if arm is None:
        arm = choose_arm(state, body.user_id, body.session_id)
    bundle = state.bundles[arm.bundle]     # looked up once: a reload cannot change it midway
    rec = serving_recommender(bundle, arm.pipeline)
    request, history = with_live(state, rec, body, to_request(body))
    # drift monitoring samples what the bundle's feature profile describes: the default
    # bundle's hybrid for_you lists
    monitor = state.monitor if record else None
    sample = (monitor is not None and arm.bundle == DEFAULT_BUNDLE
              and arm.pipeline == DEFAULT_PIPELINE and request.surface == "for_you")
    result = rec.recommend(request, history=history, with_features=sample)
    if (sample and monitor is not None and result.features is not None
            and result.scores is not None):
        monitor.record_served(bundle.version, result.features, result.scores)
    warnings = list(result.warnings)
    unknown = [c for c in body.filters.categories if c not in rec.catalog.category_index]
    if unknown:
        warnings.append(f"unknown categories (no item matches them): {', '.join(unknown[:10])}")
    request_id = uuid.uuid4().hex
    if record:
        if arm.experiment is not None and arm.variant is not None and arm.unit is not None:
            state.exposures.submit(Exposure(
                request_id, arm.experiment, arm.variant, arm.unit,
                tuple(r.item_id for r in result.items), bundle.version, datetime.now(UTC)))
        state.metrics.recommendations.labels(arm.label).inc()
        if result.fallback:
            state.metrics.fallbacks.labels(arm.label).inc()
    return arm, RecommendationResponse(
        request_id=request_id, model_version=bundle.version, experiment=arm.experiment,
        variant=arm.variant, fallback=result.fallback, items=items_out(result.items),
        warnings=warnings)


def _event_errors(index: int, raw: Any, exc: ValidationError) -> list[EventError]:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    return [EventError(index=index, event_id=event_id if isinstance(event_id, str) else None,
                       field=".".join(str(p) for p in err["loc"]) or None, message=err["msg"])
            for err in exc.errors(include_url=False)]


def ingest_events(state: ServingState, raw_events: Sequence[Any]) -> EventBatchResponse:
    """Validate each event on its own; store the valid ones in one transaction (durable when
    this returns); report the others by index, field and message."""
    valid: list[dict[str, Any]] = []
    errors: list[EventError] = []
    rejected = 0
    latest = datetime.now(UTC) + timedelta(seconds=state.settings.limits.max_clock_skew_s)
    for i, raw in enumerate(raw_events):
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as exc:
            errors += _event_errors(i, raw, exc)
            rejected += 1
            continue
        ts = event.timestamp if event.timestamp.tzinfo else event.timestamp.replace(tzinfo=UTC)
        if ts > latest:
            errors.append(EventError(index=i, event_id=event.event_id, field="timestamp",
                                     message=f"{ts.isoformat()} is in the future (more than "
                                     f"{state.settings.limits.max_clock_skew_s:g} s ahead)"))
            rejected += 1
            continue
        valid.append(event.model_dump(exclude_none=True))
    inserted, duplicates = state.store.add_events(valid) if valid else (0, 0)
    if state.monitor is not None and valid:
        state.monitor.record_events(valid, datetime.now(UTC))
    m = state.metrics.events
    m.labels("inserted").inc(inserted)
    m.labels("duplicate").inc(duplicates)
    m.labels("rejected").inc(rejected)
    return EventBatchResponse(received=len(raw_events), inserted=inserted, duplicates=duplicates,
                              rejected=rejected, errors=errors)

