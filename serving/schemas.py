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
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# Bounds of every number a client sends. Finite, and well inside SQLite's 64-bit integers and
# the readout's float arithmetic: one event with a price of 1e308 must not overflow a sum.
MAX_PRICE = 1e9             # a unit price, in the shop's currency
MAX_QUANTITY = 1_000_000    # units in one purchase line
MAX_POSITION = 10_000       # 0-based position in a recommendation list
MAX_TEXT = 256              # ids, categories
LATEST = datetime(2262, 4, 11, tzinfo=UTC)   # pandas' nanosecond clock ends 2262-04-11

# Text with a lone UTF-16 surrogate (JSON "\\ud800") is refused by pydantic-core itself
# ("unable to parse raw data as a unicode string", naming the field); the error answer
# escapes what it echoes, so it encodes too (serving.errors).
# No NUL character either: PostgreSQL text cannot hold one (an event store may be PostgreSQL),
# and an id with one in it is a client bug, not an id.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=NO_NUL)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]
Price = Annotated[float, Field(strict=True, ge=0, le=MAX_PRICE, allow_inf_nan=False)]


def _number_not_text(value: Any) -> Any:
    # pydantic's lax int would turn "5" into 5 and false into 0; its strict int would refuse
    # 5.0, which JSON Schema counts as an integer. Refuse text and booleans only.
    if isinstance(value, (str, bool, bytes)):
        raise ValueError(f"Input should be a JSON integer, not {type(value).__name__}")
    return value


Int = Annotated[int, BeforeValidator(_number_not_text)]
Position = Annotated[int, Field(ge=0, le=MAX_POSITION), BeforeValidator(_number_not_text)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY), BeforeValidator(_number_not_text)]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Device = Literal["desktop", "mobile", "tablet", "app", "other"]
EventType = Literal["impression", "view", "click", "add_to_cart", "purchase"]


def _in_clock_range(ts: datetime) -> datetime:
    # older times are certainly wrong, and either end is out of range for the training data's
    # nanosecond clock
    aware = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if aware < EPOCH:
        raise ValueError(f"{ts.isoformat()} is before 1970-01-01")
    if aware >= LATEST:
        raise ValueError(f"{ts.isoformat()} is after 2262-04-10")
    return ts


Timestamp = Annotated[datetime, AfterValidator(_in_clock_range)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- recommendations
class ContextIn(RequestModel):
    timestamp: Timestamp | None = Field(
        None, description="request time (ISO 8601; naive = UTC), 1970..2262; default: no time "
        "filter")
    device: Device | None = None
    cart: list[Id] = Field(default_factory=list, description="item ids, at most max_cart (50)")
    current_item: Id | None = Field(None, description="the product page being viewed")
    recent_views: list[Id] = Field(default_factory=list,
                                   description="item ids, oldest first, at most max_recent_views")


class FiltersIn(RequestModel):
    categories: list[Text] = Field(default_factory=list, description="only these categories")
    price_min: Price | None = None
    price_max: Price | None = Field(None, description="at least price_min")
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
    k: Int = Field(10, ge=1, description="items to return, 1..max_k (100)")
    filters: FiltersIn = Field(default_factory=FiltersIn)
    surface: Literal["for_you", "buy_again", "discover"] = Field(
        "for_you", description="the list to fill: for_you (repeats and discoveries as the "
        "ranker orders them), buy_again (only items the shopper bought before), discover "
        "(only items new to the shopper)")


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

    # "user_id or session_id" stated in the schema too, so a generated client knows it
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}},
        {"required": ["session_id"], "properties": {"session_id": {"type": "string"}}}]})

    event_id: Id = Field(description="client-chosen, unique; a repeat is counted, not stored")
    user_id: Id | None = None
    session_id: Id | None = None
    item_id: Id
    event_type: EventType
    timestamp: Timestamp = Field(description="ISO 8601 (naive = UTC) or Unix seconds; from "
                                 "1970 to max_clock_skew_s (1 h) ahead of the server clock")
    request_id: Id | None = Field(None, description="the recommendation that led to it")
    position: Position | None = Field(None,
                                 description="0-based position in that list")
    price: Price | None = Field(None, description="unit price")
    quantity: Quantity | None = Field(None,
                                 description="default 1")
    device: Device | None = None

    @model_validator(mode="after")
    def _has_unit(self) -> EventIn:
        if self.user_id is None and self.session_id is None:
            raise ValueError("user_id or session_id is required")
        return self


class _EachEvent:
    """A list validated item by item in the handler (one bad event must not sink its batch),
    whose schema still says what each item is: OpenAPI shows ``items: EventIn``."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.list_schema(core_schema.any_schema(), min_length=1)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(core_schema.list_schema(EventIn.__pydantic_core_schema__, min_length=1))


class EventBatchIn(RequestModel):
    events: Annotated[list[Any], _EachEvent] = Field(
        description="1..max_batch (1000) events; each is validated on its own: the valid ones "
        "are stored even when others are rejected")


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


# ---------------------------------------------------------------------- catalog
MAX_TITLE = 1_000
MAX_DESCRIPTION = 20_000
Title = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE, pattern=NO_NUL)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION, pattern=NO_NUL)]
Flag = Annotated[bool, Field(strict=True)]
# The catalog keeps ids stripped (Python's str.strip), so an id with a blank at either end would
# become another id: refused. The blanks are spelt out, as regex flavours disagree on "\s".
_EDGE = (r"[^\x00\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
         r"\u3000]")
CatalogId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT,
                                             pattern=f"^{_EDGE}([^\\x00]*{_EDGE})?$")]


class ItemChangeIn(RequestModel):
    """One item to create or update: its id and the fields to set (a field left out keeps its
    value; a new item needs only its id: title defaults to the id, category to 'unknown')."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "item_id": "i-new-1", "title": "Red enamel mug", "category": "kitchen",
        "brand": "Brilozal", "price": 9.5, "description": "350 ml, dishwasher safe",
        "in_stock": True}]})

    item_id: CatalogId = Field(description="no blank at either end")
    title: Title | None = None
    category: Category | None = None
    brand: Category | None = None
    price: Price | None = Field(None, description=f"unit price, 0..{MAX_PRICE:g}")
    description: Description | None = None
    in_stock: Flag | None = None
    first_seen: Timestamp | None = Field(None, description="launch time (ISO 8601; naive = "
                                         "UTC): a new item is 'new' from then on")
    listed: Flag | None = Field(None, description="false delists the item (never served "
                                "again); true lists it again")

    def change(self) -> dict[str, Any]:
        """The fields given, JSON-ready (what the control log stores)."""
        out = self.model_dump(exclude_none=True, mode="json")
        if self.first_seen is not None:
            ts = self.first_seen if self.first_seen.tzinfo else self.first_seen.replace(
                tzinfo=UTC)
            out["first_seen"] = ts.isoformat()
        return out


class CatalogChangesIn(RequestModel):
    items: list[ItemChangeIn] = Field(min_length=1, description="1..max_batch (1000) item "
                                      "changes; one item id at most once")


class CatalogChangesOut(BaseModel):
    control_id: int = Field(description="the control-log record that carries the change to "
                            "every worker and replica (and to later restarts)")
    created: list[str] = Field(description="items new to the catalog")
    updated: list[str] = Field(description="items that were in the catalog")
    delisted: list[str] = Field(description="items delisted by this change")
    catalog_items: int = Field(description="items in the served catalog now (listed or not)")


class CatalogItemOut(BaseModel):
    item_id: str
    title: str
    category: str
    brand: str | None
    price: float | None
    description: str | None
    in_stock: bool
    first_seen: datetime | None
    listed: bool


# ---------------------------------------------------------------------- experiments
class VariantOut(BaseModel):
    name: str
    weight: float
    bundle: str | None
    pipeline: str | None


class ExperimentOut(BaseModel):
    name: str
    salt: str | None = Field(description="only with the admin key (it decides every unit's "
                             "variant); null otherwise")
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
    control_id: int | None = Field(description="the control-log record that carries this "
                                   "reload to every other worker and replica of the store "
                                   "(null: it could not be recorded, the reload stays here)")


class DeleteUserOut(BaseModel):
    user_id: str
    events: int = Field(description="events deleted from the store")
    exposures: int = Field(description="exposures (unit = the user or one of their sessions) "
                           "deleted from the store")
    sessions: int = Field(description="sessions of the user whose anonymous events and "
                          "exposures were deleted too")
    history_dropped: list[str] = Field(description="bundles whose in-memory history had the user")
    factors_zeroed: list[str] = Field(description="bundles whose ALS user factor was zeroed")


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    bundles: dict[str, str] = Field(description="bundle name -> model version")
    worker_pid: int = Field(description="the uvicorn worker process that answered")


# ---------------------------------------------------------------------- errors (RFC 9457)
class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', 'query' or 'path', then the field")
    type: str
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class Problem(BaseModel):
    """Every 4xx and 5xx answer (``application/problem+json``, RFC 9457)."""

    type: str = Field("about:blank", description="no problem types beyond the HTTP status")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what went wrong, naming the bad value")
    instance: str | None = Field(None, description="the request path")
    errors: list[FieldError] | None = Field(None, description="422: one entry per bad field")


class EventBatchProblem(Problem):
    """A 422 of ``POST /v1/events``: the body problem (``errors`` per field), or rejected events
    (the batch counts, ``errors`` per event; the valid events were stored)."""

    errors: list[EventError] | list[FieldError] | None = None  # type: ignore[assignment]
    received: int | None = None
    inserted: int | None = None
    duplicates: int | None = None
    rejected: int | None = None
