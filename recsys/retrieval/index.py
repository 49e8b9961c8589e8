"""The FAISS item index: exact or IVF inner-product search with filters that stay correct
(see :mod:`recsys.retrieval` for the design)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Self

import faiss
import numpy as np

from recsys.errors import BundleError, DataError
from recsys.models.base import top_k
from recsys.persist import field, read_config, read_meta, read_with, write_meta
from recsys.retrieval.config import RetrievalConfig
from recsys.retrieval.measure import search_params, tune_nprobe

KIND = "item_index"
FORMAT_VERSION = 2
INDEX_FILE = "item_index.faiss"
# Exact subset search gathers the eligible rows below this share of the catalog, else scores all
# rows and masks (100k x 64, one query: gather 1.3 vs 1.9 ms at 10%, 2.7 vs 2.0 ms at 25%).
_GATHER_MAX_SHARE = 0.15
_MAX_BLOCK = 1 << 24  # floats in one block of exact scores (64 MB)
_NO_IDS = np.empty(0, dtype=np.int64)


class ItemIndex:
    """Inner-product top-k over item vectors, exact or IVF, with allowed/exclude filters.

    Build with :meth:`build` (or :meth:`load`), then :meth:`search`. Thread-safe for concurrent
    searches: search only reads the index (per-call FAISS parameters, no shared state). Keeps a
    reference to the float32 vectors (no copy when they already are float32 C-contiguous) for
    the exact fallback; the FAISS index holds its own copy.

    Example::

        index = ItemIndex.build(model.item_factors_, RetrievalConfig(), user_factors[:1000])
        ids, scores = index.search(user_vector, k=200, allowed=in_stock, exclude=seen_items)
        index.build_info_  # {"kind": "ivf", "nprobe": 16, "measured_recall": 0.96, ...}
    """

    def __init__(self, index: Any, vectors: np.ndarray, config: RetrievalConfig,
                 build_info: dict[str, Any]) -> None:
        self.index_ = index
        self.vectors_ = vectors
        self.config = config
        self.build_info_ = build_info

    @property
    def n_items(self) -> int:
        return int(self.vectors_.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors_.shape[1])

    @property
    def approximate(self) -> bool:
        return bool(self.build_info_["kind"] == "ivf")

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, vectors: np.ndarray, config: RetrievalConfig | None = None,
              query_sample: np.ndarray | None = None) -> Self:
        """Index ``vectors`` (n_items x d); tune IVF ``nprobe`` on ``query_sample`` (real user
        vectors, m x d). Without a sample, item vectors stand in for queries (with a warning)."""
        config = config or RetrievalConfig()
        x = _as_matrix(vectors, "vectors")
        n, d = x.shape
        info: dict[str, Any] = {"kind": "exact", "n_items": n, "dim": d, "nlist": None,
                                "nprobe": None, "measured_recall": 1.0, "queries": 0}
        if n <= config.exact_max_items:
            flat: Any = faiss.IndexFlatIP(d)
            flat.add(x)
            return cls(flat, x, config, info)

        queries = cls._recall_sample(x, query_sample, config)
        nlist = config.nlist_for(n)
        # Inner-product search on vectors of unequal norms (ALS factors) clusters badly; the
        # standard reduction to L2 (Bachrach et al. 2014) appends sqrt(M^2 - |x|^2) to each
        # item and 0 to each query, so the nearest item in L2 is the top inner product.
        norms = np.linalg.norm(x, axis=1)
        max_norm = float(norms.max())
        x_aug = _augment_items(x, max_norm)
        index: Any = faiss.IndexIVFFlat(faiss.IndexFlatL2(d + 1), d + 1, nlist, faiss.METRIC_L2)
        index.cp.seed = config.seed
        index.cp.max_points_per_centroid = config.train_points_per_list
        index.train(x_aug)
        index.add(x_aug)
        info["mips_max_norm"] = max_norm
        candidate = cls(index, x, config, dict(info, kind="ivf", nlist=nlist))
        nprobe, recall = tune_nprobe(candidate.raw_search, x, queries, config, nlist)
        if nprobe > config.max_probe_share * nlist or recall < config.target_recall:
            info.update(ivf_rejected={"nlist": nlist, "nprobe": nprobe, "recall": recall,
                                      "reason": "probes too many lists; exact is as fast"})
            exact: Any = faiss.IndexFlatIP(d)
            exact.add(x)
            return cls(exact, x, config, info)
        index.nprobe = nprobe
        info.update(kind="ivf", nlist=nlist, nprobe=nprobe, measured_recall=recall,
                    queries=len(queries))
        return cls(index, x, config, info)

    @staticmethod
    def _recall_sample(x: np.ndarray, query_sample: np.ndarray | None,
                       config: RetrievalConfig) -> np.ndarray:
        rng = np.random.default_rng(config.seed)
        if query_sample is None:
            warnings.warn("ItemIndex.build: no query_sample given; nprobe is tuned with item "
                          "vectors as queries, which may misjudge recall for user vectors",
                          UserWarning, stacklevel=3)
            q = x
        else:
            q = _as_matrix(query_sample, "query_sample")
            if q.shape[1] != x.shape[1]:
                raise DataError(f"query_sample has dim {q.shape[1]} (expected {x.shape[1]}, "
                                f"the dim of the item vectors)")
        if len(q) > config.recall_queries:
            q = q[np.sort(rng.choice(len(q), config.recall_queries, replace=False))]
        return np.ascontiguousarray(q)

    # ----------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids and inner-product scores per query, best first.

        ``queries`` is (n, d) or (d,) (then results are 1-D). ``allowed`` is a bool mask over
        items, ``exclude`` an array of item ids; both apply to every query. Rows with fewer than
        ``k`` eligible items are padded with id ``-1`` / score ``-inf``.
        """
        q, scalar = self._check_queries(queries)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise DataError(f"k = {k!r} (expected an int >= 1)")
        k = int(k)
        mask = self._check_allowed(allowed)
        excl = self._check_exclude(exclude)
        n_allowed = self.n_items if mask is None else int(np.count_nonzero(mask))
        ids, scores = self._search(q, k, mask, excl, n_allowed)
        ids, scores = _pad(ids, scores, k)
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def search_trusted(self, query: np.ndarray, k: int, allowed: np.ndarray, n_allowed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for a per-request hot loop whose inputs the library built itself: one
        query of the index's dim, an ``allowed`` bool mask over the items with ``n_allowed``
        True values (counted once by the caller for all its searches), ``k >= 1``. Nothing is
        checked: the checks cost about as much as a small IVF search. Returns the hits only
        (1-D, best first, no padding)."""
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        ids, scores = self._search(q, k, allowed, _NO_IDS, n_allowed)
        ok = ids[0] >= 0
        return ids[0][ok], scores[0][ok]

    def _search(self, q: np.ndarray, k: int, mask: np.ndarray | None, excl: np.ndarray,
                n_allowed: int) -> tuple[np.ndarray, np.ndarray]:
        """Validated inputs -> (ids, scores) with at most ``k`` columns, eligible hits first in
        each row (-1 / -inf after them)."""
        n_eligible = n_allowed - (len(excl) if mask is None else int(np.count_nonzero(mask[excl])))
        want = min(k, n_eligible)
        if want == 0:
            return (np.full((len(q), 0), -1, dtype=np.int64),
                    np.empty((len(q), 0), dtype=np.float32))
        if n_eligible < self.config.restrictive_share * self.n_items:
            return self._exact_subset(q, want, mask, excl)
        ids, scores = self._ann(q, want, n_allowed / self.n_items, mask, excl)
        # A row is short when ANN found fewer than `want` eligible hits (IVF lists too small,
        # or the filter removed too many): only an exact pass over the subset is correct.
        # _ann puts a row's eligible hits first: it is short iff its last slot is empty.
        short = np.flatnonzero(ids[:, want - 1] < 0)
        if len(short):
            ids[short], scores[short] = self._exact_subset(q[short], want, mask, excl)
        return ids, scores

    def raw_search(self, q: np.ndarray, k: int, params: Any = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search returning (inner-product scores, ids), undoing the L2 reduction of an
        IVF index (score = (|q|^2 + M^2 - distance) / 2)."""
        max_norm = self.build_info_.get("mips_max_norm")
        if max_norm is None:
            scores, ids = self.index_.search(q, k, params=params)
            return scores, ids
        q_aug = np.zeros((len(q), q.shape[1] + 1), np.float32)
        q_aug[:, :-1] = q
        dist, ids = self.index_.search(q_aug, k, params=params)
        q64 = q.astype(np.float64)
        scores = 0.5 * (np.einsum("ij,ij->i", q64, q64)[:, None] + max_norm ** 2 - dist)
        return np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids

    def _ann(self, q: np.ndarray, want: int, share: float, mask: np.ndarray | None,
             excl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search, then a post-filter; the first ``want`` eligible hits per row (-1 when
        fewer).

        Excluded ids take at most ``len(excl)`` of the hits, so the search over-fetches exactly
        that many. An allowed mask is handed to FAISS as an ``IDSelectorBitmap``: disallowed
        items are skipped while scanning, so no share-dependent over-fetch (and heap) is needed;
        an IVF index then probes ``nprobe * overfetch / share`` lists to find as many allowed
        items near the top as an unfiltered search finds items. The post-filter re-checks the
        mask, so the guarantee does not rest on the selector alone.
        """
        params = None
        fetch = want + len(excl)
        if mask is not None and share >= self.config.postfilter_share:
            # a mild filter (typically stock and already-bought rules): search unfiltered with a
            # little over-fetch and post-filter; a short row falls back to exact search below
            fetch = math.ceil(want / share * 1.25) + len(excl)
        elif mask is not None:
            nprobe = None
            if self.approximate:
                nprobe = min(self.build_info_["nlist"],
                             math.ceil(self.index_.nprobe * self.config.overfetch / share))
            params = search_params(nprobe, mask)
        scores, ids = self.raw_search(q, min(fetch, self.n_items), params=params)
        ok = ids >= 0
        if mask is not None:
            ok &= mask[np.where(ok, ids, 0)]
        if len(excl):
            ok &= ~np.isin(ids, excl)
        if ok[:, :want].all():
            return ids[:, :want], scores[:, :want]
        if len(q) == 1:   # serving: one query, boolean indexing beats the sort below
            keep_ids, keep_scores = ids[0][ok[0]][:want], scores[0][ok[0]][:want]
            out_ids = np.full((1, want), -1, np.int64)
            out_scores = np.full((1, want), -np.inf, np.float32)
            out_ids[0, :len(keep_ids)], out_scores[0, :len(keep_ids)] = keep_ids, keep_scores
            return out_ids, out_scores
        # stable sort moves eligible hits to the front and keeps their score order
        order = np.argsort(~ok, axis=1, kind="stable")[:, :want]
        keep = np.take_along_axis(ok, order, axis=1)
        ids = np.where(keep, np.take_along_axis(ids, order, axis=1), -1)
        scores = np.where(keep, np.take_along_axis(scores, order, axis=1), -np.inf)
        return ids, scores.astype(np.float32)

    def _exact_subset(self, q: np.ndarray, want: int, mask: np.ndarray | None,
                      excl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``want`` over the eligible items: a matrix product plus argpartition.

        A small subset is gathered first (its product is cheap); a large one is scored in place
        and masked, because copying most of the rows costs more than scoring them all.
        """
        rows: np.ndarray | None = None  # the gathered item ids
        banned: np.ndarray | None = None  # ineligible items, when all rows are scored
        allowed_rows = None if mask is None else np.flatnonzero(mask)
        if allowed_rows is not None and len(allowed_rows) < _GATHER_MAX_SHARE * self.n_items:
            rows = allowed_rows[~np.isin(allowed_rows, excl)] if len(excl) else allowed_rows
            matrix = self.vectors_[rows]
        else:
            banned = np.zeros(self.n_items, dtype=bool) if mask is None else ~mask
            banned[excl] = True
            matrix = self.vectors_
        # bound the score block to ~64 MB however many queries come at once
        step = max(1, _MAX_BLOCK // len(matrix))
        ids = np.empty((len(q), want), dtype=np.int64)
        vals = np.empty((len(q), want), dtype=np.float32)
        for start in range(0, len(q), step):
            block = q[start:start + step] @ matrix.T
            if banned is not None:
                block[:, banned] = -np.inf
            pos, top = top_k(block, want)
            if rows is not None:
                pos = np.where(pos >= 0, rows[np.maximum(pos, 0)], -1)
            ids[start:start + step], vals[start:start + step] = pos, top
        return ids, vals

    # ------------------------------------------------------------- validation
    def _check_queries(self, queries: np.ndarray) -> tuple[np.ndarray, bool]:
        arr = np.asarray(queries)
        scalar = arr.ndim == 1
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.dim:
            raise DataError(f"queries have shape {arr.shape} (expected (n, {self.dim}) or "
                            f"({self.dim},), the dim of the item vectors)")
        if arr.dtype != np.float32 and (not np.issubdtype(arr.dtype, np.number)
                                        or np.issubdtype(arr.dtype, np.complexfloating)):
            raise DataError(f"queries have dtype {arr.dtype} (expected real numbers)")
        q = np.ascontiguousarray(arr.reshape(-1, self.dim), dtype=np.float32)
        if not np.isfinite(q).all():
            raise DataError("queries contain NaN or inf values")
        return q, scalar

    def _check_allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self.n_items,):
            raise DataError(f"allowed has dtype {mask.dtype} and shape {mask.shape} (expected a "
                            f"bool mask of shape ({self.n_items},))")
        return mask

    def _check_exclude(self, exclude: np.ndarray | None) -> np.ndarray:
        if exclude is None:
            return np.empty(0, dtype=np.int64)
        arr = np.asarray(exclude)
        if arr.size == 0:
            return np.empty(0, dtype=np.int64)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"exclude has dtype {arr.dtype} and shape {arr.shape} (expected a "
                            f"1-D array of item ids)")
        bad = arr[(arr < 0) | (arr >= self.n_items)]
        if len(bad):
            raise DataError(f"exclude contains item id {int(bad[0])} (expected ids in "
                            f"0..{self.n_items - 1})")
        return np.unique(arr.astype(np.int64))

    def with_vectors(self, vectors: np.ndarray, rows: np.ndarray) -> Self:
        """A copy over ``vectors`` (the old rows first, new ones appended) in which ``rows``
        changed or are new. Exact: rebuilt (a copy of the vectors). IVF: a clone with those
        rows replaced; its lists stay as trained, which is fine for a few items (the next fit
        rebuilds them)."""
        x = _as_matrix(vectors, "vectors")
        info = dict(self.build_info_, n_items=len(x))
        if not self.approximate:
            flat: Any = faiss.IndexFlatIP(x.shape[1])
            flat.add(x)
            return type(self)(flat, x, self.config, info)
        index: Any = faiss.clone_index(self.index_)
        rows = np.asarray(rows, dtype=np.int64)
        old = rows[rows < self.n_items]
        if len(old):
            index.remove_ids(old)
        index.add_with_ids(_augment_items(x[rows], info["mips_max_norm"]), rows)
        index.nprobe = self.index_.nprobe
        return type(self)(index, x, self.config, info)

    # -------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> list[str]:
        """Write the FAISS index (its own binary format, no pickle) and the build info as JSON;
        return the file names."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index_, str(directory / INDEX_FILE))
        return [INDEX_FILE, write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                                       build_info=self.build_info_,
                                       config=self.config.model_dump(mode="json"))]

    @classmethod
    def load(cls, directory: str | Path, vectors: np.ndarray | None = None) -> Self:
        """Read what :meth:`save` wrote. Pass the item ``vectors`` when the caller has them
        (e.g. the model's factors) to avoid reconstructing them from the index."""
        directory = Path(directory)
        meta = read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        path = directory / f"{KIND}.json"
        config = read_config(meta, path, RetrievalConfig)
        index: Any = read_with(directory / INDEX_FILE, "FAISS index",
                               lambda p: faiss.read_index(str(p)))
        info = field(meta, "build_info", path)
        try:
            shape = (int(info["n_items"]), int(info["dim"]))
            kind = info["kind"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: build_info is invalid ({exc})") from None
        extra = 1 if info.get("mips_max_norm") is not None else 0
        if (index.ntotal, index.d - extra) != shape:
            raise BundleError(f"{directory / INDEX_FILE}: holds {index.ntotal} x {index.d} "
                              f"vectors but its build info says {shape[0]} x {shape[1]}")
        if vectors is None:
            if kind == "ivf":
                index.make_direct_map()
            x = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal)[:, :shape[1]])
        else:
            x = _as_matrix(vectors, "vectors")
            if x.shape != shape:
                raise BundleError(f"{directory / INDEX_FILE}: indexes {shape[0]} x {shape[1]} "
                                  f"vectors, but the model has {x.shape[0]} x {x.shape[1]}")
        if kind == "ivf":
            index.nprobe = info["nprobe"]
        return cls(index, x, config, info)


def _augment_items(x: np.ndarray, max_norm: float) -> np.ndarray:
    """Items in the L2 space of the MIPS reduction: [x, sqrt(M^2 - |x|^2)]."""
    norms2 = (x.astype(np.float64) ** 2).sum(axis=1)
    tail = np.sqrt(np.maximum(max_norm ** 2 - norms2, 0.0))
    return np.ascontiguousarray(np.hstack([x, tail[:, None]]), dtype=np.float32)


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    """A finite, float32, C-contiguous 2-D array (no copy when it already is one)."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{name} has shape {arr.shape} (expected a non-empty 2-D array)")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{name} has dtype {arr.dtype} (expected real numbers)")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{name} contain NaN or inf values")
    return out


def _pad(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad result rows to ``k`` columns with id -1 / score -inf."""
    extra = k - ids.shape[1]
    ids = ids.astype(np.int64, copy=False)
    scores = scores.astype(np.float32, copy=False)
    if extra > 0:
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
    return ids, scores
