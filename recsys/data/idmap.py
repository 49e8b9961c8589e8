"""External <-> dense internal ids.

External ids (strings) exist only at the edges; models, FAISS and the ranker see ``0..n-1``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from recsys.errors import DataError


class IdMap:
    """A fixed, ordered set of external ids and their dense internal positions.

    >>> m = IdMap(["b", "a"])
    >>> m.to_internal(["a", "b"]).tolist(), m.to_external([0]).tolist()
    ([1, 0], ['b'])
    """

    def __init__(self, external_ids: Iterable[str]) -> None:
        ids = np.asarray([str(x) for x in external_ids] if not isinstance(external_ids, np.ndarray)
                         else external_ids.astype(str), dtype=object)
        index = pd.Index(ids)
        if index.has_duplicates:
            dup = index[index.duplicated()][0]
            raise DataError(f"IdMap: duplicate external id {dup!r}")
        self._index = index
        self.external_ids: np.ndarray = ids
        # per-request lookups of a few ids: a dict is ~100x faster than building a pandas Index
        self._lookup: dict[str, int] = {str(x): i for i, x in enumerate(ids)}

    @classmethod
    def from_values(cls, values: pd.Series | Iterable[str]) -> IdMap:
        """Distinct values in order of first appearance (categoricals: used categories)."""
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            return cls(values.cat.remove_unused_categories().cat.categories.astype(str))
        return cls(pd.unique(pd.Series(list(values) if not isinstance(values, pd.Series)
                                       else values).astype(str)))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._lookup

    def to_internal(self, external_ids: Iterable[str] | pd.Series | np.ndarray, *,
                    missing: str = "raise") -> np.ndarray:
        """Map external ids to internal ints.

        ``missing``: ``"raise"`` (DataError naming the first unknown id) or ``"minus_one"``.
        """
        if isinstance(external_ids, pd.Series) and isinstance(external_ids.dtype,
                                                                pd.CategoricalDtype):
            # map the (few) categories, then index by codes: O(n) with no string hashing per row
            cat_pos = self._index.get_indexer(external_ids.cat.categories.astype(str))
            codes = external_ids.cat.codes.to_numpy()
            out = np.where(codes >= 0, cat_pos[codes], -1)
        elif isinstance(external_ids, list | tuple) and len(external_ids) <= 64:
            out = np.array([self._lookup.get(str(x), -1) for x in external_ids], dtype=np.int64)
        else:
            values = (external_ids if isinstance(external_ids, np.ndarray | pd.Series)
                      else list(external_ids))
            out = self._index.get_indexer(pd.Index(values).astype(str))
        out = np.asarray(out, dtype=np.int64)
        if missing == "raise" and (out < 0).any():
            bad = list(external_ids)[int(np.flatnonzero(out < 0)[0])]
            raise DataError(f"unknown id {bad!r} (not among the {len(self):,} known ids)")
        return out

    def to_external(self, internal_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        return self.external_ids[np.asarray(internal_ids, dtype=np.int64)]

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (unicode, so loading needs no pickle)."""
        return {f"{prefix}_ids": self.external_ids.astype(str)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile,
                    prefix: str) -> IdMap:
        return cls(np.asarray(arrays[f"{prefix}_ids"]).astype(object))
