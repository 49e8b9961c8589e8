"""The catalog API: ``PUT /v1/catalog/items`` (create or update items),
``DELETE /v1/catalog/items/{item_id}`` (delist) with the write key, and
``GET /v1/catalog/items/{item_id}`` (the item as served).

A change is checked against the served catalog (a 422 names the bad value and nothing is
stored), appended to the store's control log (durable when the answer is sent), applied here at
once and by every other worker and replica within ``live.poll_s`` (:mod:`serving.catalog`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError

from recsys import columns as C
from recsys.catalog import LISTED
from serving import catalog
from serving.auth import require_write
from serving.deps import StateDep
from serving.schemas import (
    MAX_TEXT,
    CatalogChangesIn,
    CatalogChangesOut,
    CatalogItemOut,
)
from serving.settings import DEFAULT_BUNDLE
from serving.state import ServingState

router = APIRouter(prefix="/v1", tags=["catalog"])
# as GET /v1/items/{item_id}/similar: an id the catalog does not hold is a 404
ItemId = Annotated[str, PathParam(min_length=1, max_length=MAX_TEXT)]
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "a bad value (unknown field, negative or non-finite price, empty id, "
                         "an item twice, over max_batch...), named; nothing is stored"}}


def _apply(state: ServingState, changes: list[dict[str, Any]]) -> CatalogChangesOut:
    rec = state.bundles[DEFAULT_BUNDLE].recommender
    catalog.check_changes(rec, changes)          # DataError -> 422, before anything is stored
    known = {c[C.ITEM_ID] for c in changes if c[C.ITEM_ID] in rec.items}
    control_id = catalog.record_changes(state.store, changes)
    state.sync_catalog()
    ids = list(dict.fromkeys(c[C.ITEM_ID] for c in changes))
    return CatalogChangesOut(
        control_id=control_id, created=[i for i in ids if i not in known],
        updated=[i for i in ids if i in known],
        delisted=[c[C.ITEM_ID] for c in changes if c.get(LISTED) is False],
        catalog_items=len(state.bundles[DEFAULT_BUNDLE].recommender.items))


@router.put("/catalog/items", response_model=CatalogChangesOut, operation_id="changeItems",
            dependencies=[Depends(require_write)], responses=_WRITE_RESPONSES)
def change_items(body: CatalogChangesIn, state: StateDep) -> CatalogChangesOut:
    """Create or update items (write key): each names its ``item_id`` and the fields to set;
    a field left out keeps its value. A new item is embedded from its metadata at once, so
    content, category and new-arrival recommendations can show it before anyone bought it.
    ``listed: false`` delists an item (as ``DELETE``), ``listed: true`` lists it again.

    The change is stored in the event store before the answer (it survives restarts and is
    applied on top of any bundle loaded later), applied by this worker before the answer, and
    by every other worker and replica within ``live.poll_s`` (0.5 s by default).
    """
    limit = state.settings.limits.max_batch
    if len(body.items) > limit:
        raise RequestValidationError([{
            "type": "too_long", "loc": ("body", "items"), "input": None,
            "msg": f"List should have at most {limit} items (max_batch), not {len(body.items)}",
            "ctx": {"max_length": limit, "actual_length": len(body.items)}}])
    return _apply(state, [item.change() for item in body.items])


@router.delete("/catalog/items/{item_id}", response_model=CatalogChangesOut,
               operation_id="delistItem", dependencies=[Depends(require_write)],
               responses={404: {"description": "unknown item"}})
def delist_item(item_id: ItemId, state: StateDep) -> CatalogChangesOut:
    """Delist an item (write key): it is never served again, on any worker, from at most
    ``live.poll_s`` after the answer; its data stays, and ``PUT`` with ``listed: true`` brings
    it back."""
    if item_id not in state.bundles[DEFAULT_BUNDLE].recommender.items:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown item_id {item_id!r}")
    return _apply(state, [{C.ITEM_ID: item_id, LISTED: False}])


@router.get("/catalog/items/{item_id}", response_model=CatalogItemOut, operation_id="getItem",
            responses={404: {"description": "unknown item"}})
def get_item(item_id: ItemId, state: StateDep) -> CatalogItemOut:
    """The item as this worker serves it (the bundle's catalog with every change applied)."""
    item = catalog.item_view(state.bundles[DEFAULT_BUNDLE].recommender, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown item_id {item_id!r}")
    return CatalogItemOut.model_validate(item)
