"""Request and response bodies of the API (pydantic), kept apart: a request model says what a
client may send (unknown keys are a 422, like unknown config keys), a response model what it
gets back.

Limits that come from the settings (k, cart length, batch size...) are checked per app by
:mod:`serving.limits`, so they are described here but not hard-coded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Device = Literal["desktop", "mobile", "tablet", "app", "other"]
EventType = Literal["impression", "view", "click", "add_to_cart", "purchase"]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- recommendations
class ContextIn(RequestModel):
    timestamp: datetime | None = Field(
        None, description="request time (ISO 8601; naive = UTC); default: no time filter")
    device: Device | None = None
    cart: list[Id] = Field(default_factory=list, description="item ids, at most max_cart (50)")
    current_item: Id | None = Field(None, description="the product page being viewed")
    recent_views: list[Id] = Field(default_factory=list,
                                   description="item ids, oldest first, at most max_recent_views")


class FiltersIn(RequestModel):
    categories: list[str] = Field(default_factory=list, description="only these categories")
    price_min: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_max: float | None = Field(None, ge=0, allow_inf_nan=False)
    exclude_items: list[Id] = Field(default_factory=list)

    @model_validator(mode="after")
    def _price_range(self) -> FiltersIn:
        if (self.price_min is not None and self.price_max is not None
                and self.price_min > self.price_max):
            raise ValueError(f"price_min ({self.price_min}) > price_max ({self.price_max})")
        return self


class RecommendationRequest(RequestModel):
    """A user (or anonymous session), what they are doing now, and how many items to return."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "user_id": "u000042", "session_id": "s-9f1c",
        "context": {"device": "mobile", "cart": ["i00007"], "recent_views": ["i00012"]},
        "k": 5, "filters": {"categories": ["Kitchen"], "price_max": 80}}]})

    user_id: Id | None = None
    session_id: Id | None = None
    context: ContextIn = Field(default_factory=ContextIn)
    k: int = Field(10, ge=1, description="items to return, 1..max_k (100)")
    filters: FiltersIn = Field(default_factory=FiltersIn)


class ItemOut(BaseModel):
    item_id: str
    score: float | None = Field(description="the ranking score (null if not finite)")
    rank: int = Field(description="1-based")
    reasons: list[str]


class RecommendationResponse(BaseModel):
    request_id: str = Field(description="send it back with the events this list causes")
    model_version: str
    experiment: str | None
    variant: str | None
    fallback: bool = Field(description="true when the user is unknown: popularity and the "
                           "request context drive the list")
    items: list[ItemOut]
    warnings: list[str]


class SimilarItemsResponse(BaseModel):
    item_id: str
    model_version: str
    items: list[ItemOut]


# ---------------------------------------------------------------------- events
class EventIn(RequestModel):
    """One event; validated on its own so one bad event does not sink its batch."""

    event_id: Id = Field(description="client-chosen, unique; a repeat is counted, not stored")
    user_id: Id | None = None
    session_id: Id | None = None
    item_id: Id
    event_type: EventType
    timestamp: datetime = Field(description="ISO 8601 (naive = UTC) or Unix seconds")
    request_id: Id | None = Field(None, description="the recommendation that led to it")
    position: int | None = Field(None, ge=0, description="0-based position in that list")
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    quantity: int | None = Field(None, ge=1)
    device: Device | None = None

    @field_validator("timestamp")
    @classmethod
    def _after_epoch(cls, ts: datetime) -> datetime:
        # older times are certainly wrong, and out of range for the training data's ns clock
        if (ts if ts.tzinfo else ts.replace(tzinfo=UTC)) < EPOCH:
            raise ValueError(f"{ts.isoformat()} is before 1970-01-01")
        return ts

    @model_validator(mode="after")
    def _has_unit(self) -> EventIn:
        if self.user_id is None and self.session_id is None:
            raise ValueError("user_id or session_id is required")
        return self


class EventBatchIn(RequestModel):
    events: list[Any] = Field(min_length=1, description="at most max_batch (1000) events; "
                              "each is validated on its own")


class EventError(BaseModel):
    index: int = Field(description="position of the event in the batch (0-based)")
    event_id: str | None
    field: str | None = Field(description="dotted path of the bad field; null: the whole event")
    message: str


class EventBatchResponse(BaseModel):
    received: int
    inserted: int
    duplicates: int = Field(description="event ids already stored (or repeated in the batch)")
    rejected: int
    errors: list[EventError]


# ---------------------------------------------------------------------- experiments
class VariantOut(BaseModel):
    name: str
    weight: float
    bundle: str | None
    pipeline: str | None


class ExperimentOut(BaseModel):
    name: str
    salt: str
    traffic: float
    unit: str
    active: bool
    variants: list[VariantOut]


class GuardrailCheckOut(BaseModel):
    name: str
    value: float
    threshold: float
    passed: bool


class VariantLiveOut(BaseModel):
    units: int
    exposures: int
    events: dict[str, int]
    window_requests: int = Field(description="this process's recent requests of the variant")
    window_errors: int
    guardrails: list[GuardrailCheckOut] = Field(
        description="empty until the window holds guardrails.min_requests requests")


class ExperimentDetail(ExperimentOut):
    counts: dict[str, VariantLiveOut]


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]


# ---------------------------------------------------------------------- admin, health
class ReloadIn(RequestModel):
    bundle: Id = Field(description="a bundle name from the settings, e.g. 'default'")
    path: str = Field(min_length=1, description="bundle directory on the server")


class ReloadOut(BaseModel):
    bundle: str
    path: str
    previous_version: str
    model_version: str
    load_seconds: float


class DeleteUserOut(BaseModel):
    user_id: str
    events: int = Field(description="events deleted from the store")
    exposures: int = Field(description="exposures (unit = user id) deleted from the store")
    history_dropped: list[str] = Field(description="bundles whose in-memory history had the user")
    factors_zeroed: list[str] = Field(description="bundles whose ALS user factor was zeroed")


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    bundles: dict[str, str] = Field(description="bundle name -> model version")
    worker_pid: int = Field(description="the uvicorn worker process that answered")
