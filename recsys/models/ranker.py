"""Contextual LambdaMART ranker (LightGBM ``lambdarank``) over candidate features.

Trained on the validation window: one query per sampled request, graded labels
(purchase 4 > add_to_cart 3 > click 2 > view 1 > none 0), early stopping on a held-out share of
the queries (split by time, the latest queries held out). Saved as LightGBM's text model.

Serving makes one LightGBM call per request, ``pred_leaf``: the score is the sum of the reached
leaves' values, and each leaf also carries the per-feature contribution of its root-to-leaf path
(Saabas attribution), precomputed from the model dump. Measured here, TreeSHAP
(``pred_contrib``) cost 3-8 ms for 10 rows of a 100-tree model, over the whole latency budget;
the path attribution is a gather and a sum. Both decompose the same score; the feature a reason
cites (largest path contribution) also raises the score under TreeSHAP, and per-feature
attributions correlate (``tests/models/test_ranker.py``). ``contributions_shap`` keeps TreeSHAP
for offline analysis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from pydantic import Field, model_validator

from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.errors import BundleError, DataError, NotFittedError
from recsys.persist import field, read_config, read_meta, read_with, write_meta

KIND = "ranker"
FORMAT_VERSION = 2
MODEL_FILE = "ranker.txt"


class RankerConfig(StrictModel):
    # label of a candidate by the deepest thing the shopper then did with it (none = 0)
    grades: dict[str, int] = Field(default_factory=lambda: {
        C.VIEW: 1, C.CLICK: 2, C.ADD_TO_CART: 3, C.PURCHASE: 4})
    # LambdaMART gain per label: 2^label - 1, so a purchase weighs twice an add-to-cart
    label_gain: tuple[float, ...] = (0.0, 1.0, 3.0, 7.0, 15.0)
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    min_data_in_leaf: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    max_rounds: int = Field(500, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    # negatives kept per training query at most, a seeded random sample (every positive is
    # kept): LambdaMART learns the order from the pairs a query has, and most candidates of a
    # 200-item pool are negatives; bounds the rows, so training time, on big shops
    negatives: int | None = Field(50, ge=1)
    holdout_share: float = Field(0.2, gt=0, lt=1)   # queries (shoppers) early stopping watches
    # then train again on every query for the rounds early stopping chose (the held-out
    # shoppers are data too)
    refit_all: bool = True
    eval_at: int = Field(10, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _grades_fit_gains(self) -> RankerConfig:
        unknown = sorted(set(self.grades) - set(C.EVENT_TYPES))
        if unknown:
            raise ValueError(f"ranker.grades: unknown event type(s) {unknown} (expected "
                             f"{', '.join(C.EVENT_TYPES)})")
        top = max(self.grades.values(), default=0)
        if min(self.grades.values(), default=1) < 1 or top >= len(self.label_gain):
            raise ValueError(f"ranker.grades must be 1..{len(self.label_gain) - 1} (one "
                             f"label_gain per grade, 0 = no event); got {self.grades}")
        return self

    def grade_by_type(self) -> np.ndarray:
        """Grade per event type code (``columns.EVENT_TYPES`` order)."""
        return np.array([self.grades.get(t, 0) for t in C.EVENT_TYPES], dtype=np.int32)


def sample_negatives(labels: np.ndarray, groups: np.ndarray, keep: int | None,
                     seed: int) -> np.ndarray:
    """Rows to learn from (bool): every positive, and per query at most ``keep`` negatives
    drawn at random (seeded); ``keep=None``: every row."""
    if keep is None:
        return np.ones(len(labels), dtype=bool)
    query = np.repeat(np.arange(len(groups)), groups)
    negative = np.flatnonzero(labels == 0)
    draw = np.random.default_rng(seed).random(len(negative))
    order = negative[np.lexsort((draw, query[negative]))]      # by query, shuffled within
    q = query[order]
    first = np.r_[0, np.flatnonzero(q[1:] != q[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    kept = labels != 0
    kept[order[rank < keep]] = True
    return kept


def _sizes(query: np.ndarray, holdout: np.ndarray, side: bool) -> np.ndarray:
    """Group sizes of the queries on one side of ``holdout``, from the rows' query numbers."""
    return np.bincount(query, minlength=len(holdout))[holdout == side]


class Ranker:
    """Wraps a LightGBM booster; ``predict`` and ``contributions`` take a feature matrix."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.booster_: lgb.Booster | None = None
        self.feature_names_: list[str] = []
        self.history_: list[dict[str, float]] = []
        self.best_iteration_: int = 0
        self._leaf_values: np.ndarray | None = None
        self._leaf_contrib: np.ndarray | None = None

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray,
            feature_names: list[str], holdout: np.ndarray | None = None) -> Ranker:
        """``groups``: sizes of consecutive queries (in time order). ``holdout``: which queries
        early stopping watches (bool per query); default the latest ``holdout_share``. Queries
        of one shopper must fall on one side (their labels overlap)."""
        if len(groups) < 2:
            raise DataError(f"ranker: {len(groups)} training queries (expected at least 2)")
        cfg = self.config
        if holdout is None:
            holdout = np.zeros(len(groups), dtype=bool)
            holdout[-max(1, int(len(groups) * cfg.holdout_share)):] = True
        if holdout.all() or not holdout.any():
            holdout = np.zeros(len(groups), dtype=bool)
            holdout[-1] = True
        rows = np.repeat(holdout, groups)
        kept = sample_negatives(labels, groups, cfg.negatives, cfg.seed)
        params = {
            "objective": "lambdarank", "metric": "ndcg", "eval_at": [cfg.eval_at],
            "num_leaves": cfg.num_leaves, "learning_rate": cfg.learning_rate,
            "min_data_in_leaf": cfg.min_data_in_leaf, "feature_fraction": cfg.feature_fraction,
            # one thread: on this 2-core machine under load, 2 threads took 24.7 s where 1 took
            # 3.6 s (130k rows, 60 rounds): OpenMP threads wait for each other
            "seed": cfg.seed, "deterministic": True, "num_threads": 1, "verbose": -1,
            "label_gain": list(cfg.label_gain),
        }
        query = np.repeat(np.arange(len(groups)), groups)
        learn = kept & ~rows      # early stopping watches the held-out queries' full pools
        train = lgb.Dataset(features[learn], labels[learn],
                            group=_sizes(query[learn], holdout, False),
                            feature_name=feature_names, free_raw_data=False)
        hold = lgb.Dataset(features[rows], labels[rows], group=groups[holdout],
                           reference=train)
        record: dict[str, Any] = {}
        self.booster_ = lgb.train(
            params, train, num_boost_round=cfg.max_rounds, valid_sets=[hold],
            valid_names=["holdout"],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False),
                       lgb.record_evaluation(record)])
        key = f"ndcg@{cfg.eval_at}"
        # the holdout only (NDCG over the training rows each round is time spent on nothing)
        self.history_ = [{"iteration": i + 1, f"valid_{key}": float(b)}
                         for i, b in enumerate(record["holdout"][key])]
        self.best_iteration_ = int(self.booster_.best_iteration or len(self.history_))
        if cfg.refit_all:   # the rounds early stopping chose, learned again from every query
            every = lgb.Dataset(features[kept], labels[kept],
                                group=np.bincount(query[kept], minlength=len(groups)),
                                feature_name=feature_names)
            self.booster_ = lgb.train(params, every, num_boost_round=self.best_iteration_)
        self.feature_names_ = list(feature_names)
        self._leaf_values = None
        return self

    def _compile(self) -> None:
        """Leaf values and per-leaf path contributions from the model dump (first
        ``best_iteration_`` trees)."""
        booster = self._booster()
        trees = booster.dump_model(num_iteration=self.best_iteration_)["tree_info"]
        n_feat = booster.num_feature()
        n_leaves = max(t["num_leaves"] for t in trees)
        values = np.zeros((len(trees), n_leaves))
        contrib = np.zeros((len(trees), n_leaves, n_feat))
        for t, tree in enumerate(trees):
            stack = [(tree["tree_structure"], np.zeros(n_feat))]
            while stack:
                node, path = stack.pop()
                if "leaf_index" in node:
                    values[t, node["leaf_index"]] = node["leaf_value"]
                    contrib[t, node["leaf_index"]] = path
                    continue
                for side in ("left_child", "right_child"):
                    child = node[side]
                    child_value = child.get("leaf_value", child.get("internal_value", 0.0))
                    step = path.copy()
                    step[node["split_feature"]] += child_value - node["internal_value"]
                    stack.append((child, step))
        self._leaf_values = values
        self._leaf_contrib = contrib.astype(np.float32)

    def score_leaves(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (equal to :meth:`predict`) and the leaf reached in each tree, so the caller
        can explain just the rows it keeps with :meth:`explain_leaves`."""
        leaves = np.asarray(self._booster().predict(
            features, num_iteration=self.best_iteration_, pred_leaf=True, num_threads=1),
            dtype=np.int64)
        if leaves.ndim == 1:
            leaves = leaves[:, None]
        if self._leaf_values is None:
            self._compile()
        assert self._leaf_values is not None
        trees = np.arange(leaves.shape[1])
        scores = self._leaf_values[trees, leaves].sum(axis=1).astype(np.float32)
        return scores, leaves

    def explain_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """Per-feature path contributions (rows x features) for rows given by their leaves."""
        if self._leaf_contrib is None:
            self._compile()
        assert self._leaf_contrib is not None
        trees = np.arange(leaves.shape[1])
        return self._leaf_contrib[trees, leaves].sum(axis=1)

    def _booster(self) -> lgb.Booster:
        if self.booster_ is None:
            raise NotFittedError("Ranker is not fitted; call fit() or load()")
        return self.booster_

    def predict(self, features: np.ndarray) -> np.ndarray:
        booster = self._booster()
        return np.asarray(booster.predict(features, num_iteration=self.best_iteration_,
                                          num_threads=1), dtype=np.float32)

    def contributions_shap(self, features: np.ndarray) -> np.ndarray:
        """Per-feature TreeSHAP contributions (n x n_features; the bias column dropped)."""
        out = self._booster().predict(features, num_iteration=self.best_iteration_,
                                      pred_contrib=True, num_threads=1)
        return np.asarray(out)[:, :-1]

    def importances(self) -> dict[str, float]:
        gain = self._booster().feature_importance("gain", iteration=self.best_iteration_)
        return {n: round(float(g), 3) for n, g in zip(self.feature_names_, gain, strict=True)}

    def save(self, directory: Path) -> list[str]:
        self._booster().save_model(str(directory / MODEL_FILE),
                                   num_iteration=self.best_iteration_)
        return [MODEL_FILE, write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                                       config=self.config.model_dump(),
                                       feature_names=self.feature_names_,
                                       history=self.history_,
                                       best_iteration=self.best_iteration_,
                                       importances=self.importances())]

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        meta = read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        path = directory / f"{KIND}.json"
        model = cls(read_config(meta, path, RankerConfig))
        model.booster_ = read_with(directory / MODEL_FILE, "LightGBM ranker",
                                   lambda p: lgb.Booster(model_file=str(p)))
        model.feature_names_ = list(field(meta, "feature_names", path))
        if model.booster_.num_feature() != len(model.feature_names_):
            raise BundleError(f"{directory / MODEL_FILE}: {model.booster_.num_feature()} "
                              f"features, but {path} names {len(model.feature_names_)}")
        model.history_ = list(meta.get("history", []))
        model.best_iteration_ = int(field(meta, "best_iteration", path))
        return model
