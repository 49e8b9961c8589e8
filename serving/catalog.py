"""Catalog changes through the API: stored in the control log, applied on every worker.

``PUT /v1/catalog/items`` (create or update items) and ``DELETE /v1/catalog/items/{id}``
(delist) append one ``catalog`` record to the store's control log (payload: the list of item
changes, each an ``item_id`` and the fields it sets); that is what makes them durable and shared.
Every process applies the records it has not applied yet to every bundle it serves
(:func:`apply_catalog`): the worker that took the write at once, the others within
``live.poll_s`` (:mod:`serving.live_sync`), a process starting later or a bundle loaded later
(a restart, a reload) all of them, on top of the bundle's own catalog. Applying is
:meth:`~recsys.recommender.HybridRecommender.update_catalog` (copy-on-write: the new recommender
is built while the old one serves, then one attribute is assigned, so no request fails); a new
item is embedded from its metadata at once.

Records are merged before applying (per item, a later record's fields override an earlier
one's), so a bundle loaded after many changes is updated once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from recsys import columns as C
from recsys.catalog import LISTED
from recsys.catalog_update import merged_table
from recsys.errors import DataError
from recsys.recommender import HybridRecommender
from serving.event_store import CATALOG, ControlRecord, EventStore

if TYPE_CHECKING:
    from serving.state import LoadedBundle

log = logging.getLogger(__name__)
SUBJECT = "items"     # the control records' subject: the catalog is one for every bundle


def changes_frame(changes: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Item changes (dicts with ``item_id`` and the fields they set) as the frame
    :meth:`~recsys.recommender.HybridRecommender.update_catalog` takes; per item, the later
    change's fields win."""
    merged: dict[str, dict[str, Any]] = {}
    for change in changes:
        merged.setdefault(str(change[C.ITEM_ID]), {}).update(change)
    frame = pd.DataFrame(list(merged.values()))
    if C.FIRST_SEEN in frame:
        frame[C.FIRST_SEEN] = pd.to_datetime(frame[C.FIRST_SEEN], utc=True, format="ISO8601")
    return frame


def check_changes(rec: HybridRecommender, changes: Sequence[Mapping[str, Any]]) -> None:
    """DataError naming the bad value if ``changes`` cannot be applied to ``rec``'s catalog
    (an item twice in one change is ambiguous: refused)."""
    seen: set[str] = set()
    for change in changes:
        item = str(change[C.ITEM_ID])
        if item in seen:
            raise DataError(f"catalog changes: item_id {item!r} twice in one change")
        seen.add(item)
    merged_table(rec.catalog, changes_frame(changes))


def record_changes(store: EventStore, changes: Sequence[Mapping[str, Any]]) -> int:
    """Append the changes to the control log (durable when this returns); the record's id."""
    return store.add_control(CATALOG, SUBJECT, {"items": [dict(c) for c in changes]})


def _changes(records: Sequence[ControlRecord]) -> list[dict[str, Any]]:
    return [c for r in records for c in r.payload.get("items", [])]


def updated(rec: HybridRecommender, records: Sequence[ControlRecord]) -> HybridRecommender:
    """``rec`` with the records applied: all at once; if that fails, one by one, skipping (and
    logging) a record that does not apply, so one bad record never blocks the others."""
    try:
        return rec.update_catalog(changes_frame(_changes(records)))
    except Exception as exc:  # DataError, or a failure the checks did not foresee
        if len(records) == 1:
            log.error("catalog record #%d not applied: %s: %s", records[0].id,
                      type(exc).__name__, exc)
            return rec
    for record in records:
        rec = updated(rec, [record])
    return rec


def apply_catalog(bundle: LoadedBundle, store: EventStore) -> int:
    """Apply the catalog records after the last one ``bundle`` has, swapping in the updated
    recommender; returns how many were applied. The caller serialises it with erasures
    (``ServingState``): both edit what a bundle serves."""
    records = store.control_log(after_id=bundle.catalog_id, kind=CATALOG)
    if not records:
        return 0
    bundle.recommender = updated(bundle.recommender, records)   # one assignment: atomic
    bundle.catalog_id = records[-1].id
    return len(records)


def item_view(rec: HybridRecommender, item_id: str) -> dict[str, Any] | None:
    """The item's row of the served catalog (None: unknown), JSON-ready."""
    if item_id not in rec.items:
        return None
    row = rec.catalog.table.iloc[int(rec.items.to_internal([item_id])[0])]
    out: dict[str, Any] = {C.ITEM_ID: item_id}
    for column in (C.TITLE, C.CATEGORY, C.BRAND, C.PRICE, C.DESCRIPTION, C.IN_STOCK,
                   C.FIRST_SEEN, LISTED):
        value = row.get(column) if column in row else None
        out[column] = None if value is None or (not isinstance(value, str) and pd.isna(value)) \
            else value
    if out[LISTED] is None:
        out[LISTED] = True
    if out[C.IN_STOCK] is None:
        out[C.IN_STOCK] = True
    return out
