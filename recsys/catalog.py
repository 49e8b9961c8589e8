"""The catalog as the recommender reads it: one array per attribute, in internal-id order.

Built from the validated item table (``recsys.data.validate.validate_items``): ids, titles,
category and brand codes, prices, stock and launch dates. Rules (eligibility), features and
reasons read these arrays; the table itself is kept for saving and for re-embedding items.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.idmap import IdMap
from recsys.history import to_seconds
from recsys.persist import read_meta, read_with, write_meta

KIND = "catalog"
FORMAT_VERSION = 1
TABLE_FILE = "items.parquet"
NO_TIME = np.iinfo(np.int64).min     # first_seen unknown
LISTED = "listed"                    # a catalog column of the catalog API, not of the data


class Catalog:
    """Items in internal-id order (row i of ``table`` is item i).

    >>> # catalog = Catalog(validate_items(frame)); catalog.categories[catalog.category_codes[3]]
    """

    def __init__(self, table: pd.DataFrame) -> None:
        table = table.reset_index(drop=True)
        self.table = table
        self.items = IdMap(table[C.ITEM_ID].astype(str).to_numpy())
        self.titles = table[C.TITLE].astype(str).to_numpy()
        codes, names = pd.factorize(table[C.CATEGORY].astype(str))
        self.category_codes = codes.astype(np.int32)
        self.categories = np.asarray(names)
        self.category_index = {str(c): i for i, c in enumerate(self.categories)}
        brand = table[C.BRAND] if C.BRAND in table else pd.Series(pd.NA, index=table.index)
        self.brand_codes = pd.factorize(brand)[0].astype(np.int32)     # -1 = no brand
        self.price = table[C.PRICE].to_numpy(np.float64)
        self.in_stock = (table[C.IN_STOCK].to_numpy(bool) if C.IN_STOCK in table
                         else np.ones(len(table), dtype=bool))
        # delisted through the catalog API: never served again, whatever the shop's rules
        self.listed = (table[LISTED].to_numpy(bool) if LISTED in table
                       else np.ones(len(table), dtype=bool))
        self.first_seen = np.full(len(table), NO_TIME, dtype=np.int64)
        if C.FIRST_SEEN in table:
            seen = table[C.FIRST_SEEN]
            known = seen.notna().to_numpy()
            if known.any():
                self.first_seen[known] = to_seconds(seen[known])

    def __len__(self) -> int:
        return len(self.price)

    @cached_property
    def n_brands(self) -> int:
        return int(self.brand_codes.max()) + 1 if len(self.brand_codes) else 0

    def category_of(self, item: int) -> str:
        return str(self.categories[self.category_codes[item]])

    def name(self, item: int) -> str:
        """How a reason names an item: ``'Title' (id)``."""
        return f"'{self.titles[item]}' ({self.items.external_ids[item]})"

    def save(self, directory: Path) -> list[str]:
        self.table.to_parquet(directory / TABLE_FILE, index=False)
        return [TABLE_FILE, write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                                       items=len(self))]

    @classmethod
    def load(cls, directory: Path) -> Self:
        read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        return cls(read_with(directory / TABLE_FILE, "item table", pd.read_parquet))
