"""Catalog changes between fits: prices, stock, categories, titles, new items, delisting.

:func:`update_catalog` returns a new :class:`~recsys.recommender.HybridRecommender` (the old one
keeps serving until the caller swaps them): changed rows are applied to the catalog, new items
are appended, and every part that is per item grows with them. A new item gets its content
embedding from its metadata at once (the fitted encoder; torch is imported here, not to
serve), so the content sources, its category's popular list and the similar-items page can
recommend it before anyone has bought it; it has no ALS vector, co-purchases or popularity
until the next fit. A changed title, category, brand, price or description re-embeds the item.
A delisted item (``listed = false``) is never served again.

>>> # rec = update_catalog(rec, pd.DataFrame({"item_id": ["new-1"], "title": ["Red mug"],
>>> #                                          "category": ["kitchen"], "price": [9.5]}))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.catalog import LISTED, Catalog
from recsys.data.validate import validate_items
from recsys.errors import DataError
from recsys.models.content import ContentModel
from recsys.models.mf import MFModel
from recsys.sources.base import Parts

if TYPE_CHECKING:
    from recsys.recommender import HybridRecommender

FIELDS: tuple[str, ...] = (C.TITLE, C.CATEGORY, C.BRAND, C.PRICE, C.DESCRIPTION, C.IN_STOCK,
                           C.FIRST_SEEN, LISTED)
EMBEDDED = (C.TITLE, C.CATEGORY, C.BRAND, C.PRICE, C.DESCRIPTION)   # what the encoder reads


def merged_table(catalog: Catalog, changes: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The catalog table with ``changes`` applied (new ids appended, in their order), validated,
    and the rows whose content embedding must be computed (new, or an embedded field changed)."""
    if C.ITEM_ID not in changes:
        raise DataError(f"catalog changes need an '{C.ITEM_ID}' column (got "
                        f"{', '.join(map(str, changes.columns))})")
    unknown = sorted(set(changes.columns) - {C.ITEM_ID, *FIELDS})
    if unknown:
        raise DataError(f"catalog changes: unknown column(s) {unknown} (expected "
                        f"{', '.join(FIELDS)})")
    ids = changes[C.ITEM_ID].astype(str)
    if ids.duplicated().any():
        raise DataError(f"catalog changes: item_id {ids[ids.duplicated()].iloc[0]!r} twice")
    table = catalog.table.copy()
    if LISTED not in table:
        table[LISTED] = True
    known = catalog.items.to_internal(ids.to_numpy(), missing="minus_one")
    new_ids = ids[known < 0]
    additions = pd.DataFrame({C.ITEM_ID: new_ids.to_numpy()})
    table = pd.concat([table, additions], ignore_index=True)
    positions = np.where(known >= 0, known, len(catalog) + np.cumsum(known < 0) - 1)
    before = table.iloc[positions][[c for c in EMBEDDED if c in changes]].copy()
    for column in changes.columns.drop(C.ITEM_ID):
        given = changes[column].to_numpy()
        present = pd.notna(given)
        if column not in table:
            table[column] = pd.NA
        table[column] = table[column].astype(object)     # validated below, whatever came in
        table.loc[positions[present], column] = given[present]
    try:
        listed = table[LISTED].astype("boolean").fillna(True).astype(bool)
    except (TypeError, ValueError):
        raise DataError(f"catalog changes: column '{LISTED}' must be true or false") from None
    valid = validate_items(table.drop(columns=[LISTED]), source="catalog changes")
    valid[LISTED] = listed.to_numpy()
    changed = np.zeros(len(valid), dtype=bool)
    changed[len(catalog):] = True
    for column in before.columns:
        now = valid[column].iloc[positions].astype("string").fillna("")
        then = before[column].astype("string").fillna("")
        changed[positions[(now.to_numpy() != then.to_numpy())]] = True
    return valid, np.flatnonzero(changed)


def update_catalog(rec: HybridRecommender, changes: pd.DataFrame) -> HybridRecommender:
    """A recommender over the catalog with ``changes`` applied (see the module docstring)."""
    from recsys.recommender import HybridRecommender

    parts = rec.parts
    table, rows = merged_table(parts.catalog, changes)
    n_new = len(table) - len(parts.catalog)
    cf, content = parts.spaces["cf"], parts.spaces["content"]
    assert isinstance(cf.model, MFModel) and isinstance(content.model, ContentModel)
    new_items = np.arange(len(parts.catalog), len(table))
    grown = Parts(Catalog(table), parts.popularity.with_items(table),
                  {"cf": cf.with_model(cf.model.with_items(n_new), new_items),
                   "content": content.with_model(content.model.with_items(table, rows), rows)},
                  parts.repeat.with_items(n_new))
    sources = {name: source.rebind(grown) for name, source in rec.sources.items()}
    out = HybridRecommender(parts=grown, history=rec.history, users=rec.users,
                            type_weights=rec.type_weights, sources=sources, config=rec.config,
                            rankers=rec.rankers, manifest=rec.manifest)
    out.profile, out.report = rec.profile, rec.report
    return out
