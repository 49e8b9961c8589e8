"""Request and response bodies of the dashboard's JSON endpoints (``/v1/dashboard/*``).

The experiments view reuses the experiments' own schemas (``ExperimentDetail``,
``ExperimentReadout``); the preview's request wraps the shop's :class:`RecommendationRequest`
unchanged, so a field the shop's request gains (``surface``, say) reaches the preview with no
change here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.schemas import ExperimentDetail, Id, ItemOut, RecommendationRequest, RequestModel

Num = float | None


# ---------------------------------------------------------------------- experiments
class DashboardExperiments(BaseModel):
    experiments: list[ExperimentDetail] = Field(
        description="every configured experiment, in config order, with live counts (salts "
        "are never shown on the dashboard)")


# ---------------------------------------------------------------------- model health
class SpanOut(BaseModel):
    start: str | None
    end: str | None
    events: int


class ModelOut(BaseModel):
    kind: str
    valid_metrics: dict[str, float] = Field(description="on the validation split, at training")
    best_iteration: int | None
    curve: list[dict[str, Any]] = Field(description="validation metrics per iteration / epoch")


class RankerOut(BaseModel):
    queries: int
    rows: int
    best_iteration: int | None
    holdout: dict[str, float]
    top_features: list[tuple[str, float]] = Field(description="the ten largest importances")


class BundleOut(BaseModel):
    """A loaded bundle, from its manifest."""

    name: str
    path: str
    version: str
    created_at: str
    loaded_at: str
    catalog_items: int
    known_users: int
    sources: list[str]
    features: int = Field(description="ranker features")
    data_fingerprint: str
    holdout_start: str = Field(description="first event of the holdout (early stopping and "
                               "the rankers' training window)")
    spans: dict[str, SpanOut] = Field(description="the events each part was fitted on")
    models: dict[str, ModelOut]
    ranker: RankerOut | None = Field(description="the for_you surface's ranker")
    ranked_surfaces: list[str] = Field(description="surfaces with a ranker of their own")
    timings_seconds: dict[str, float]


class Availability(BaseModel):
    """A panel whose data may not exist yet on this server."""

    available: bool
    note: str


class WindowOut(BaseModel):
    """One arm's part of the window of served lists (``arm = "all"``: the whole window)."""

    arm: str
    lists: int
    span_s: float
    requests_per_s: Num
    latency_ms: dict[str, float] = Field(description="p50, p90, p95, p99; empty without lists")
    fallback_rate: Num
    slots: int
    distinct_items: int
    coverage: Num = Field(description="distinct items served / items in the champion's catalog")
    top_n: int = Field(description="items in the catalog's top fraction (1%)")
    top_share: Num = Field(description="share of slots that went to the top_n most served items")


class TopItemOut(BaseModel):
    item_id: str
    title: str | None
    slots: int
    share: float


class LatencyBucketOut(BaseModel):
    le_ms: Num = Field(description="upper bound; null: the open last bucket")
    count: int


class LiveOut(BaseModel):
    worker_pid: int = Field(description="the window is this worker's")
    window_size: int
    rate_window_s: float
    top_fraction: float
    catalog_items: int
    arms: list[WindowOut] = Field(description="'all' first, then each arm seen")
    top_items: list[TopItemOut]
    latency_histogram: list[LatencyBucketOut]


class ModelHealth(BaseModel):
    generated_at: str
    champion: BundleOut = Field(description="the 'default' bundle")
    bundles: list[BundleOut] = Field(description="every loaded bundle, the champion first")
    registry: Availability
    drift: Availability
    live: LiveOut


# ---------------------------------------------------------------------- storefront
class ShopperSummary(BaseModel):
    user_id: str
    events: int
    purchases: int


class ShopperList(BaseModel):
    known_users: int
    shoppers: list[ShopperSummary] = Field(description="shoppers with purchases, most first")


class PurchaseOut(BaseModel):
    item_id: str
    title: str | None = Field(description="null: not in the champion's catalog")
    category: str | None
    price: Num
    quantity: int
    timestamp: str
    source: Literal["bundle", "store"] = Field(
        description="bundle: the history the champion learned from; store: events received "
        "since")


class ShopperOut(BaseModel):
    user_id: str
    known: bool = Field(description="the champion has history or a vector for the shopper")
    events: int = Field(description="events in the champion's history")
    purchases: list[PurchaseOut] = Field(description="newest first, at most 50")


class ArmIn(RequestModel):
    experiment: Id
    variant: Id


class PreviewIn(RequestModel):
    """What a shop would send, and which arm should answer."""

    request: RecommendationRequest = Field(
        default_factory=RecommendationRequest,
        description="the body of POST /v1/recommendations, unchanged")
    arm: Literal["assigned", "default"] | ArmIn = Field(
        "assigned", description="assigned: the variant the experiments give this shopper; "
        "default: the default bundle's hybrid, no experiment; or one experiment's variant")


class PreviewArmOut(BaseModel):
    experiment: str | None
    variant: str | None
    bundle: str
    pipeline: str
    assigned: bool = Field(description="chosen by the experiments' bucketing")


class PreviewItemOut(ItemOut):
    """A served item with the catalog's facts (null: not in the answering bundle's catalog)."""

    title: str | None
    category: str | None
    price: Num
    in_stock: bool | None


class PreviewOut(BaseModel):
    """The list a shop would get; nothing was recorded (no exposure, no metrics)."""

    arm: PreviewArmOut
    model_version: str
    fallback: bool
    items: list[PreviewItemOut]
    warnings: list[str]


class ExperimentArms(BaseModel):
    name: str
    active: bool
    variants: list[str]


class PreviewOptions(BaseModel):
    surfaces: list[str] = Field(description="values of the request's 'surface' field; empty "
                                "when this server's request has none")
    default_surface: str | None
    max_k: int
    experiments: list[ExperimentArms]
