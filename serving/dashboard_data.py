"""What the dashboard shows, without HTTP: the champion from its manifest, the live window of
served lists, shoppers and what they bought, and the storefront preview's arm and cards.

Route handlers (``serving.routes.dashboard``) call these and turn ``LookupError`` into 404s.
Nothing here writes: the dashboard is read-only.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel

from recsys import columns as C
from recsys.history import TYPE_CODE
from recsys.recommender import HybridRecommender
from serving.champion import current_champion
from serving.dashboard_schema import (
    Availability,
    BundleOut,
    ExperimentArms,
    LatencyBucketOut,
    LiveOut,
    ModelHealth,
    ModelOut,
    PreviewArmOut,
    PreviewIn,
    PreviewItemOut,
    PreviewOptions,
    PurchaseOut,
    RankerOut,
    ShopperList,
    ShopperOut,
    ShopperSummary,
    SpanOut,
    TopItemOut,
    WindowOut,
)
from serving.health import ALL, ServedWindow, WindowSummary
from serving.schemas import ItemOut, RecommendationRequest
from serving.service import DEFAULT_PIPELINE, Arm, choose_arm
from serving.settings import DEFAULT_BUNDLE
from serving.state import LoadedBundle, ServingState

PURCHASE = TYPE_CODE[C.PURCHASE]
MAX_PURCHASES = 50
REGISTRY_NOTE = ("No model registry on this server yet: the champion is the bundle loaded "
                 "from the configured path, and its history is not kept. Serve a registry "
                 "(registry = DIR, or recsys serve --registry DIR) for versions, a champion "
                 "pointer every worker follows, and rollback (docs/operations.md).")
DRIFT_NOTE = ("Drift monitoring is off on this server ([monitoring] enabled = false). "
              "Coverage, concentration and the fallback rate of recent traffic are under Live "
              "traffic.")


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


# ---------------------------------------------------------------------- model health
def bundle_out(bundle: LoadedBundle) -> BundleOut:
    m, rec = bundle.manifest, bundle.recommender
    ranker = None
    info = m.rankers.get("for_you")
    if info is not None:
        top = sorted(info.importances.items(), key=lambda kv: -kv[1])[:10]
        ranker = RankerOut(queries=info.queries, rows=info.rows,
                           best_iteration=info.best_iteration,
                           holdout=dict(info.holdout), top_features=top)
    return BundleOut(
        name=bundle.name, path=str(bundle.path), version=m.version,
        created_at=m.created_at.isoformat(), loaded_at=bundle.loaded_at.isoformat(),
        catalog_items=len(rec.items), known_users=len(rec.history.users),
        sources=list(m.sources), features=len(m.features),
        data_fingerprint=m.data.fingerprint, holdout_start=m.data.holdout_start.isoformat(),
        spans={part: SpanOut(start=_iso(s.start), end=_iso(s.end), events=s.events)
               for part, s in m.data.spans.items()},
        models={name: ModelOut(kind=info.kind, valid_metrics=dict(info.valid_metrics),
                               best_iteration=info.best_iteration, curve=list(info.curve))
                for name, info in m.models.items()},
        ranker=ranker, ranked_surfaces=sorted(rec.rankers),
        timings_seconds=dict(m.timings_seconds))


def _window_out(arm: str, s: WindowSummary) -> WindowOut:
    return WindowOut(arm=arm, lists=s.lists, span_s=s.span_s, requests_per_s=s.requests_per_s,
                     latency_ms=s.latency_ms, fallback_rate=s.fallback_rate, slots=s.slots,
                     distinct_items=s.distinct_items, coverage=s.coverage, top_n=s.top_n,
                     top_share=s.top_share)


def live_out(window: ServedWindow, rec: HybridRecommender) -> LiveOut:
    """The window's summary per arm (``all`` first), with the champion's catalog."""
    summaries = window.by_arm(len(rec.items), now=time.time())
    overall = summaries[ALL]
    titles = rec.catalog.titles
    index = rec.items.to_internal([t.item_id for t in overall.top_items], missing="minus_one")
    return LiveOut(
        worker_pid=os.getpid(), window_size=window.size, rate_window_s=window.rate_window_s,
        top_fraction=window.top_fraction, catalog_items=len(rec.items),
        arms=[_window_out(arm, s) for arm, s in summaries.items()],
        top_items=[TopItemOut(item_id=t.item_id, title=str(titles[i]) if i >= 0 else None,
                              slots=t.slots, share=t.share)
                   for t, i in zip(overall.top_items, index, strict=True)],
        latency_histogram=[LatencyBucketOut(le_ms=le, count=n)
                           for le, n in overall.latency_histogram])


def registry_availability(state: ServingState) -> Availability:
    """The registry's champion pointer, in a sentence."""
    root = state.settings.registry
    if root is None:
        return Availability(available=False, note=REGISTRY_NOTE)
    champion = current_champion(state.store, root)
    if champion is None:
        return Availability(available=True, note=f"Registry {root}: no champion yet.")
    back = champion.lineage[-2] if len(champion.lineage) > 1 else "nothing"
    return Availability(available=True, note=(
        f"Registry {root}: champion {champion.version} since {champion.promoted_at} "
        f"({champion.reason}); rollback goes to {back}. Every worker follows the pointer "
        f"(checked every {state.settings.registry_poll_s:g} s)."))


def drift_availability(state: ServingState) -> Availability:
    """The monitor's last evaluation of this worker, in a sentence (GET /v1/monitoring and
    ``recsys monitor`` have the numbers and plots)."""
    monitor = state.monitor
    if monitor is None:
        return Availability(available=False, note=DRIFT_NOTE)
    report = monitor.last or monitor.evaluate(state)
    firing = ", ".join(report.firing) or "none"
    shown = ", ".join(f"{c.name} {c.value:.3g}" for c in report.checks if c.value is not None)
    shown = shown or "No verdict yet (too little traffic)"
    return Availability(available=True, note=(
        f"Monitoring (this worker, {report.at}): alerts firing: {firing}. {shown}. "
        f"{report.rows} served rows sampled. Details: GET /v1/monitoring, recsys monitor "
        "(docs/operations.md)."))


def model_health(state: ServingState, window: ServedWindow) -> ModelHealth:
    champion = state.bundles[DEFAULT_BUNDLE]
    others = [b for name, b in state.bundles.items() if name != DEFAULT_BUNDLE]
    return ModelHealth(
        generated_at=datetime.now(UTC).isoformat(), champion=bundle_out(champion),
        bundles=[bundle_out(b) for b in [champion, *others]],
        registry=registry_availability(state),
        drift=drift_availability(state),
        live=live_out(window, champion.recommender))


# ---------------------------------------------------------------------- shoppers
def shoppers(rec: HybridRecommender, limit: int) -> ShopperList:
    """The shoppers with the most purchases in the champion's history (ties: by first seen)."""
    h = rec.history
    lengths = np.diff(h.offsets)
    # the owner of each purchase, found from the per-user offsets (memory ~ purchases, not
    # events: a 10M-event history has far fewer purchases)
    at = np.flatnonzero(h.types == PURCHASE)
    owner = np.searchsorted(h.offsets, at, side="right") - 1
    bought = np.bincount(owner, minlength=len(h.users))
    order = np.argsort(-bought, kind="stable")[:limit]
    order = order[bought[order] > 0]
    return ShopperList(known_users=len(h.users), shoppers=[
        ShopperSummary(user_id=str(h.users.external_ids[u]), events=int(lengths[u]),
                       purchases=int(bought[u])) for u in order])


def _catalog_entry(rec: HybridRecommender, item_id: str) -> tuple[str | None, str | None, int]:
    i = int(rec.items.to_internal([item_id], missing="minus_one")[0])
    if i < 0:
        return None, None, i
    return str(rec.catalog.titles[i]), rec.catalog.category_of(i), i


def shopper(state: ServingState, user_id: str) -> ShopperOut:
    """What the shopper bought: the champion's history, and purchases stored since."""
    rec = state.bundles[DEFAULT_BUNDLE].recommender
    events = rec.history.slice(user_id)
    bought = events.types == PURCHASE
    rows: list[PurchaseOut] = []
    for item, qty, price, t in zip(events.items[bought], events.quantity[bought],
                                   events.price[bought], events.times[bought], strict=True):
        item_id = str(rec.items.external_ids[item])
        price_f = float(price) if np.isfinite(price) else float(rec.catalog.price[item])
        rows.append(PurchaseOut(item_id=item_id, title=str(rec.catalog.titles[item]),
                                category=rec.catalog.category_of(int(item)), price=price_f,
                                quantity=int(qty),
                                timestamp=datetime.fromtimestamp(int(t), UTC).isoformat(),
                                source="bundle"))
    for ev in state.store.iter_events(user_id=user_id, event_types=[C.PURCHASE]):
        title, category, _ = _catalog_entry(rec, str(ev[C.ITEM_ID]))
        price = ev.get(C.PRICE)
        rows.append(PurchaseOut(item_id=str(ev[C.ITEM_ID]), title=title, category=category,
                                price=None if price is None else float(price),
                                quantity=int(ev.get(C.QUANTITY) or 1),
                                timestamp=ev[C.TIMESTAMP].isoformat(), source="store"))
    rows.sort(key=lambda r: r.timestamp, reverse=True)
    return ShopperOut(user_id=user_id, known=rec.is_known(user_id), events=len(events),
                      purchases=rows[:MAX_PURCHASES])


# ---------------------------------------------------------------------- preview
def field_choices(model: type[BaseModel], name: str) -> tuple[list[str], str | None]:
    """The allowed values and the default of an enum field of ``model``, read from its JSON
    schema (``([], None)`` when the model has no such field): what the preview offers as
    surfaces follows the shop's request schema, never a list kept here."""
    schema = model.model_json_schema()
    prop: dict[str, Any] | None = schema.get("properties", {}).get(name)
    if prop is None:
        return [], None
    defs = schema.get("$defs", {})

    def values(node: dict[str, Any]) -> list[str]:
        if "$ref" in node:
            return values(defs.get(node["$ref"].rsplit("/", 1)[-1], {}))
        if "enum" in node:
            return [str(v) for v in node["enum"] if v is not None]
        if "const" in node:
            return [] if node["const"] is None else [str(node["const"])]
        return [v for sub in node.get("anyOf", []) + node.get("oneOf", []) for v in values(sub)]

    default = prop.get("default")
    return values(prop), None if default is None else str(default)


def preview_options(state: ServingState) -> PreviewOptions:
    surfaces, default = field_choices(RecommendationRequest, "surface")
    return PreviewOptions(
        surfaces=surfaces, default_surface=default, max_k=state.settings.limits.max_k,
        experiments=[ExperimentArms(name=e.name, active=e.active,
                                    variants=[v.name for v in e.variants])
                     for e in state.experiments.experiments])


def preview_arm(state: ServingState, body: PreviewIn) -> tuple[Arm, bool]:
    """The arm the preview runs and whether bucketing chose it. ``LookupError`` names an
    unknown experiment or variant."""
    req = body.request
    if body.arm == "assigned":
        return choose_arm(state, req.user_id, req.session_id), True
    if body.arm == "default":
        return Arm(DEFAULT_BUNDLE, DEFAULT_PIPELINE), False
    exp = state.experiments.get(body.arm.experiment)
    v = exp.variant(body.arm.variant)
    return Arm(v.bundle or DEFAULT_BUNDLE, v.pipeline or DEFAULT_PIPELINE, exp.name, v.name,
               req.user_id or req.session_id), False


def preview_arm_out(arm: Arm, assigned: bool) -> PreviewArmOut:
    return PreviewArmOut(experiment=arm.experiment, variant=arm.variant, bundle=arm.bundle,
                         pipeline=arm.pipeline, assigned=assigned)


def preview_items(rec: HybridRecommender, items: list[ItemOut]) -> list[PreviewItemOut]:
    """The served items as cards: the catalog's title, category, price and stock."""
    index = rec.items.to_internal([i.item_id for i in items], missing="minus_one")
    cat = rec.catalog
    out = []
    for item, i in zip(items, index, strict=True):
        if i < 0:
            out.append(PreviewItemOut(**item.model_dump(), title=None, category=None, price=None,
                                      in_stock=None))
            continue
        price = float(cat.price[i])
        out.append(PreviewItemOut(**item.model_dump(), title=str(cat.titles[i]),
                                  category=cat.category_of(int(i)),
                                  price=price if np.isfinite(price) else None,
                                  in_stock=bool(cat.in_stock[i])))
    return out
