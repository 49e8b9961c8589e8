"""Matrix factorisation (implicit ALS or BPR) with early stopping and fold-in of new users.

A thin layer over ``implicit.cpu``: we add the confidence transform, validation-driven early
stopping, float32 C-contiguous factors ready for a FAISS inner-product index, exact fold-in for
users unseen in training, and pickle-free save/load.

Training in chunks works because implicit's ``fit`` keeps existing factors (it only initialises
``user_factors``/``item_factors`` when they are ``None``), so ``fit`` called ``n`` times with
``iterations=k`` runs the same ALS sweeps as one call with ``iterations=n*k``. The random state
is passed as a ``numpy.random.Generator`` so that repeated BPR calls continue one sampling
stream instead of replaying the first epoch's samples.
"""

from __future__ import annotations

import copy
import re
import time
import warnings
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from recsys.configfile import StrictModel
from recsys.errors import DataError
from recsys.models.base import TrainingData, ValidationData, VectorModel, top_k
from recsys.persist import read_arrays, read_config, read_meta, write_arrays, write_meta
from recsys.threads import training_threads

KIND = "mf"
FORMAT_VERSION = 2
_METRIC = re.compile(r"^(ndcg|recall)@([1-9][0-9]*)$")
_EVAL_BATCH = 1024  # validation users scored at once: bounds the dense score block's memory


class MFConfig(StrictModel):
    """Hyperparameters of :class:`MFModel`; a ``[mf]`` table in a pipeline config."""

    # ALS: fast, deterministic, strong on implicit feedback; BPR: a pairwise-ranking baseline.
    algorithm: Literal["als", "bpr"] = "als"
    # 64 floats per vector: enough for a shop's taste dimensions, small for FAISS and fold-in.
    factors: int = Field(default=64, ge=1)
    # implicit's default; larger values help very sparse data, tune with pipelines/tune.
    regularization: float = Field(default=0.01, ge=0)
    # C = 1 + alpha * weight. Weights already grade the funnel (view 1 .. purchase 8), so 1.0
    # keeps confidences in 2..~50 instead of Hu et al.'s 40x scaling of raw counts.
    alpha: float = Field(default=1.0, ge=0)
    # A cap, not a target: ALS converges in 10-20 sweeps and early stopping cuts it short.
    # BPR counts epochs here and usually needs ~100.
    iterations: int = Field(default=30, ge=1)
    # BPR only: implicit's default SGD step.
    learning_rate: float = Field(default=0.01, gt=0)
    # A validation check every 5 sweeps keeps its cost under ~10% of training time.
    eval_every: int = Field(default=5, ge=1)
    # Two checks (10 sweeps) without improvement: ALS curves are smooth, noise is small.
    patience: int = Field(default=2, ge=1)
    # The early-stopping criterion: "ndcg@K" or "recall@K"; NDCG rewards getting the top right.
    metric: str = Field(default="ndcg@10", pattern=_METRIC.pattern)
    # Seeds the factor initialisation (and BPR's sampling); fixed so reruns are comparable.
    seed: int = 42


class MFModel(VectorModel):
    """Implicit-feedback matrix factorisation; ``score = user_factors @ item_factors.T``.

    Users unknown to the model are passed as id ``-1``; their vector is folded in from their
    ``user_items`` row (for ALS exactly what implicit's ``recalculate_user`` computes).

    >>> model = MFModel(MFConfig(factors=32)).fit(data, valid)  # doctest: +SKIP
    >>> ids, scores = model.recommend(5, data.matrix[[5]], k=10)  # doctest: +SKIP
    >>> ids, scores = model.recommend(-1, new_user_row, k=10)  # fold-in  # doctest: +SKIP
    >>> model.best_iteration_, model.valid_metrics_  # iteration kept, its metrics  # doctest: +SKIP
    """

    name = "mf"

    def __init__(self, config: MFConfig | None = None, *, num_threads: int | None = None) -> None:
        """``num_threads``: implicit's OpenMP threads (default: ``training_threads()``). A
        runtime setting, not a hyperparameter; BPR is only bit-reproducible with 1 thread."""
        self.config = config or MFConfig()
        self.num_threads = num_threads
        self.user_factors_: np.ndarray | None = None
        self.item_factors_: np.ndarray | None = None
        self.history_: list[dict[str, Any]] = []
        self.best_iteration_: int | None = None
        self.valid_metrics_: dict[str, float] = {}
        self._gram: np.ndarray | None = None  # ALS: YtY + reg * I, for fold-in
        self._item_unit: np.ndarray | None = None  # unit-norm item vectors, for similar_items

    # ----------------------------------------------------------------------------------- fit
    def fit(self, data: TrainingData, valid: ValidationData | None = None) -> Self:
        """Factorise ``data.matrix``; with ``valid``, stop early on ``config.metric``."""
        matrix = data.matrix
        if matrix.shape != (len(data.users), len(data.items)):
            raise DataError(f"training matrix has shape {matrix.shape} (expected "
                            f"{(len(data.users), len(data.items))}: users x items)")
        if matrix.nnz == 0:
            raise DataError("training matrix has no interactions; nothing to factorise")
        if valid is not None and len(valid.userids) == 0:
            warnings.warn("MF: validation set has no users; training without early stopping",
                          stacklevel=2)
            valid = None
        conf = self.confidence(matrix)
        self.history_, self.valid_metrics_ = [], {}
        # implicit's own OpenMP loop uses the cores; a multi-threaded BLAS underneath it
        # oversubscribes them (implicit warns about this), so BLAS is pinned to 1 thread.
        with threadpool_limits(limits=1, user_api="blas"):
            algo = self._make_implicit()
            if valid is None:
                algo.iterations = self.config.iterations
                algo.fit(conf, show_progress=False)
                self._set_factors(algo.user_factors, algo.item_factors, copy=False)
                self.best_iteration_ = self.config.iterations
            else:
                self._fit_early_stopping(algo, conf, valid)
        return self

    def _make_implicit(self) -> Any:
        import implicit.cpu.als
        import implicit.cpu.bpr

        cfg = self.config
        threads = self.num_threads or training_threads()
        rng = np.random.default_rng(cfg.seed)
        if cfg.algorithm == "als":
            # alpha=1: the confidence transform is already applied by `confidence`
            return implicit.cpu.als.AlternatingLeastSquares(
                factors=cfg.factors, regularization=cfg.regularization, alpha=1.0,
                dtype=np.float32, iterations=cfg.iterations, num_threads=threads,
                random_state=rng)
        return implicit.cpu.bpr.BayesianPersonalizedRanking(
            factors=cfg.factors, learning_rate=cfg.learning_rate,
            regularization=cfg.regularization, dtype=np.float32, iterations=cfg.iterations,
            num_threads=threads, random_state=rng)

    def _fit_early_stopping(self, algo: Any, conf: sp.csr_matrix, valid: ValidationData) -> None:
        cfg = self.config
        threads = self.num_threads or training_threads()
        done, bad, best = 0, 0, -np.inf
        best_state: tuple[np.ndarray, np.ndarray] | None = None
        auc: list[float] = []

        def on_epoch(_epoch: int, _secs: float, correct: float | None, skipped: float = 0.0,
                     *_: Any) -> None:
            # BPR reports (correct, skipped) samples per epoch: a training AUC estimate
            if cfg.algorithm == "bpr" and correct is not None and conf.nnz > skipped:
                auc.append(float(correct) / (conf.nnz - float(skipped)))

        while done < cfg.iterations:
            step = min(cfg.eval_every, cfg.iterations - done)
            start = time.perf_counter()
            algo.iterations = step
            algo.fit(conf, show_progress=False, callback=on_epoch)
            seconds = time.perf_counter() - start
            done += step
            self._set_factors(algo.user_factors, algo.item_factors, copy=False)
            entry: dict[str, Any] = {"iteration": done, "train_loss": None}
            if cfg.algorithm == "als":
                from implicit.cpu.als import calculate_loss

                entry["train_loss"] = float(calculate_loss(
                    conf, algo.user_factors, algo.item_factors, cfg.regularization,
                    num_threads=threads))
            elif auc:
                entry["train_auc"] = auc[-1]
            metrics = self.evaluate(valid)
            entry.update({f"valid_{k}": v for k, v in metrics.items()})
            entry["seconds"] = seconds
            self.history_.append(entry)
            if metrics[cfg.metric] > best:
                best, bad = metrics[cfg.metric], 0
                best_state = (algo.user_factors.copy(), algo.item_factors.copy())
                self.best_iteration_, self.valid_metrics_ = done, metrics
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        assert best_state is not None
        self._set_factors(*best_state, copy=False)

    def _set_factors(self, users: np.ndarray, items: np.ndarray, *, copy: bool = True) -> None:
        """Store factors as float32 C-contiguous (FAISS-ready); ``copy=False`` may share memory
        with implicit's arrays, which is fine once that model is discarded or restored from."""
        if copy:
            users, items = users.copy(), items.copy()
        self.user_factors_ = np.ascontiguousarray(users, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(items, dtype=np.float32)
        self._prepare()

    def _prepare(self) -> None:
        """Caches derived from the item factors (fit and load): Gram matrix, unit vectors."""
        items = self.item_factors_
        assert items is not None
        if self.config.algorithm == "als":
            y = items.astype(np.float64)
            self._gram = y.T @ y + self.config.regularization * np.eye(items.shape[1])
        # BPR's last column is the item bias: popularity, not similarity
        content = items[:, : self.config.factors].astype(np.float64)
        norms = np.linalg.norm(content, axis=1, keepdims=True)
        self._item_unit = np.divide(content, norms, out=np.zeros_like(content),
                                    where=norms > 0).astype(np.float32)

    # ----------------------------------------------------------------------------- scoring
    @property
    def n_items(self) -> int:
        self._check_fitted("item_factors_")
        assert self.item_factors_ is not None
        return self.item_factors_.shape[0]

    @property
    def n_users(self) -> int:
        self._check_fitted("user_factors_")
        assert self.user_factors_ is not None
        return self.user_factors_.shape[0]

    def confidence(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        """The matrix handed to implicit: ``1 + alpha * weight`` for ALS, weights for BPR
        (which only uses the sparsity pattern)."""
        out = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
        if self.config.algorithm == "als":
            out.data = (1.0 + self.config.alpha * out.data).astype(np.float32)
        return out

    def fold_in(self, user_items_row: sp.spmatrix) -> np.ndarray:
        """A user vector (float32, like one row of ``user_factors_``) from a 1 x n_items history.

        ALS: the exact least-squares solution implicit's ``recalculate_user`` computes,
        ``x = (YtY + reg*I + Yt (C-I) Y)^-1 Yt C p`` over the history's items only, using the
        Gram matrix cached at fit/load (about 0.1 ms for 64 factors). BPR has no closed form;
        we take the confidence-weighted mean of the history's item vectors (plus the bias
        column = 1), which ranks items by similarity to what the user touched. An empty
        history gives the zero vector (ALS) or the bias-only vector (BPR: item-bias order).

        Speed assumes single-threaded BLAS (the ``"serve"`` thread policy): a multi-threaded
        BLAS on these tiny products costs more in thread wake-ups than it saves.
        """
        self._check_fitted("item_factors_")
        row = sp.csr_matrix(user_items_row)
        if row.shape != (1, self.n_items):
            raise DataError(f"fold_in: user_items_row has shape {row.shape} "
                            f"(expected (1, {self.n_items}))")
        return self._fold_in_rows(row)[0]

    def _fold_in_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        items = self.item_factors_
        assert items is not None
        out = np.zeros((rows.shape[0], items.shape[1]), dtype=np.float32)
        rows = sp.csr_matrix(rows, dtype=np.float32)
        for r in range(rows.shape[0]):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            out[r] = self._solve(rows.indices[lo:hi], rows.data[lo:hi])
        return out

    def _solve(self, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """One user's fold-in from item ids and interaction weights (see :meth:`fold_in`)."""
        items = self.item_factors_
        assert items is not None
        out = np.zeros(items.shape[1], dtype=np.float32)
        c = weights.astype(np.float64)
        if self.config.algorithm == "bpr":
            out[-1] = 1.0
            if len(idx) and c.sum() > 0:
                out[:-1] = (c @ items[idx, :-1]) / c.sum()
            return out
        if len(idx) == 0:
            return out
        assert self._gram is not None
        c = 1.0 + self.config.alpha * c     # the confidence transform, as in `confidence`
        y = items[idx].astype(np.float64)
        # as implicit: negative confidence = disliked (counts in A, not in b)
        a = self._gram + (y.T * (np.abs(c) - 1.0)) @ y
        b = y.T @ np.where(c > 0, c, 0.0)
        return scipy.linalg.solve(a, b, assume_a="pos", check_finite=False).astype(np.float32)

    # ---- what the recommender asks ----------------------------------------------------------

    def with_items(self, n_new: int) -> MFModel:
        """A copy knowing ``n_new`` more items (appended, with no vector until the next fit);
        the original is left as it is, so requests reading it are never half-way through."""
        grown = copy.copy(self)
        assert self.item_factors_ is not None
        pad = np.zeros((n_new, self.item_factors_.shape[1]), np.float32)
        grown._set_factors(self.user_factors_ if self.user_factors_ is not None
                           else np.zeros((0, pad.shape[1]), np.float32),
                           np.vstack([self.item_factors_, pad]), copy=False)
        return grown

    def item_vectors(self) -> np.ndarray:
        self._check_fitted("item_factors_")
        assert self.item_factors_ is not None
        return self.item_factors_

    def item_unit_vectors(self) -> np.ndarray:
        self._check_fitted("item_factors_")
        assert self._item_unit is not None
        return self._item_unit

    def user_vector(self, user: int, items: np.ndarray, weights: np.ndarray
                    ) -> np.ndarray | None:
        """The trained factor of a known ``user``; otherwise (unknown, or forgotten) the
        fold-in of the profile (``items`` with summed interaction ``weights``, unique ids)."""
        factors = self.user_factors_
        if factors is not None and 0 <= user < len(factors) and factors[user].any():
            return factors[user]
        if len(items) == 0:
            return None
        return self._solve(np.asarray(items), np.asarray(weights))

    def forget_user(self, user: int) -> bool:
        """Zero ``user``'s factor (all the model keeps of their events); the item factors are
        aggregates over everyone and stay until the next fit. Copy-on-write, so a request
        reading the old array is never half-way through a change."""
        factors = self.user_factors_
        if factors is None or not 0 <= user < len(factors) or not factors[user].any():
            return False
        edited = factors.copy()
        edited[user] = 0.0
        self.user_factors_ = edited
        return True

    def user_vectors(self, userids: np.ndarray, user_items: sp.spmatrix, *,
                     recalculate: bool = False) -> np.ndarray:
        """(len(userids), dim) float32. Id ``-1`` (any negative id): fold in from that user's
        ``user_items`` row. ``recalculate=True`` folds in every user, e.g. known users with
        events newer than the model."""
        self._check_fitted("user_factors_")
        assert self.user_factors_ is not None
        userids = np.atleast_1d(np.asarray(userids, dtype=np.int64))
        rows = self._check_user_items(user_items, len(userids))
        too_big = userids >= self.n_users
        if too_big.any():
            raise DataError(f"userid {int(userids[too_big][0])} out of range (model has "
                            f"{self.n_users} users; pass -1 to fold in an unknown user)")
        unknown = (userids < 0) | recalculate
        out = self.user_factors_[np.where(unknown, 0, userids)]
        if unknown.any():
            pick = np.flatnonzero(unknown)
            out[pick] = self._fold_in_rows(rows[pick])
        return out

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores ``user_vectors @ item_factors_.T``; id ``-1`` = fold-in."""
        self._check_fitted("item_factors_")
        assert self.item_factors_ is not None
        vectors = self.user_vectors(userids, user_items)
        return np.asarray(vectors @ self.item_factors_.T, dtype=np.float32)

    def similar_items(self, itemid: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of item factors; the item itself excluded. An item without a
        learned vector (no training events) has no neighbours: all ids -1."""
        self._check_fitted("item_factors_")
        assert self._item_unit is not None
        if not 0 <= int(itemid) < self.n_items:
            raise DataError(f"itemid {itemid} out of range (model has {self.n_items} items)")
        if k < 1:
            raise DataError(f"k = {k} (expected k >= 1)")
        query = self._item_unit[int(itemid)]
        if not query.any():
            return np.full(k, -1, dtype=np.int64), np.full(k, -np.inf, dtype=np.float32)
        scores = (self._item_unit @ query).astype(np.float32)
        scores[int(itemid)] = -np.inf
        ids, vals = top_k(scores[None, :], k)
        return ids[0], vals[0]

    def evaluate(self, valid: ValidationData) -> dict[str, float]:
        """NDCG@10, recall@20 and ``config.metric`` of ``recommend`` on the validation users
        (history filtered), scored in batches so memory stays bounded."""
        metrics = {"ndcg@10": ("ndcg", 10), "recall@20": ("recall", 20)}
        metrics.setdefault(self.config.metric, _parse_metric(self.config.metric))
        if valid.history.shape[0] != self.n_users:
            raise DataError(f"validation history has {valid.history.shape[0]} rows "
                            f"(expected {self.n_users}, one per training user)")
        return self.validation_metrics(valid, metrics, batch=_EVAL_BATCH)

    def _check_user_items(self, user_items: sp.spmatrix, n_rows: int) -> sp.csr_matrix:
        if user_items.shape[0] != n_rows:
            raise DataError(f"user_items has {user_items.shape[0]} rows for {n_rows} users "
                            f"(expected 1 row for every user in userids)")
        if user_items.shape[1] != self.n_items:
            raise DataError(f"user_items has {user_items.shape[1]} columns "
                            f"(expected {self.n_items}, one per item in the model)")
        return sp.csr_matrix(user_items)

    # ----------------------------------------------------------------------------- persist
    def save(self, directory: str | Path) -> list[str]:
        """``mf.npz`` (factors, no pickle) + ``mf.json`` (config, history, best iteration)."""
        self._check_fitted("item_factors_")
        assert self.user_factors_ is not None and self.item_factors_ is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return [write_arrays(directory, KIND, {"user_factors": self.user_factors_,
                                               "item_factors": self.item_factors_}),
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                           config=self.config.model_dump(mode="json"), history=self.history_,
                           best_iteration=self.best_iteration_,
                           valid_metrics=self.valid_metrics_)]

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        directory = Path(directory)
        meta = read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        path = directory / f"{KIND}.json"
        model = cls(read_config(meta, path, MFConfig))
        arrays = read_arrays(directory, KIND, ("user_factors", "item_factors"))
        model._set_factors(arrays["user_factors"], arrays["item_factors"], copy=False)
        model.history_ = list(meta.get("history", []))
        model.best_iteration_ = meta.get("best_iteration")
        model.valid_metrics_ = dict(meta.get("valid_metrics", {}))
        return model


def _parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``."""
    match = _METRIC.match(name)
    if match is None:
        raise DataError(f"metric {name!r} (expected ndcg@K or recall@K)")
    return match.group(1), int(match.group(2))
