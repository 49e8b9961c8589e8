"""Recall of approximate search against exact search, and the nprobe tuning built on it."""

from __future__ import annotations

import warnings
from typing import Any

import faiss
import numpy as np

from recsys.retrieval.config import RetrievalConfig


def tune_nprobe(search: Any, x: np.ndarray, queries: np.ndarray, config: RetrievalConfig,
                 nlist: int) -> tuple[int, float]:
    """Smallest nprobe in the grid whose recall@candidate_depth vs exact search reaches the
    target; the largest tried (with a warning) when none does."""
    depth = min(config.candidate_depth, len(x))
    truth_scores, _ = faiss.knn(queries, x, depth, metric=faiss.METRIC_INNER_PRODUCT)
    grid = sorted({min(p, nlist) for p in config.nprobe_grid})
    recall = 0.0
    for nprobe in grid:
        got_scores, _ = search(queries, depth, search_params(nprobe))
        recall = score_recall(got_scores, truth_scores)
        if recall >= config.target_recall:
            return nprobe, recall
    warnings.warn(f"ItemIndex.build: recall@{depth} = {recall:.3f} at the largest nprobe "
                  f"({grid[-1]}) is below target_recall = {config.target_recall}; widen "
                  f"nprobe_grid or raise exact_max_items", UserWarning, stacklevel=3)
    return grid[-1], recall


def search_params(nprobe: int | None, allowed: np.ndarray | None = None) -> Any:
    """Per-call FAISS search parameters (IVF ``nprobe``, an ``allowed`` bitmap selector), so
    concurrent searches never mutate the shared index."""
    # faiss's bundled stubs describe the SWIG signatures, not the keyword and array
    # constructors of its Python wrapper used here (as in faiss tests/testsearch_params.py).
    api: Any = faiss
    args: dict[str, Any] = {}
    if allowed is not None:
        # the selector keeps a reference to the bitmap for its own lifetime
        args["sel"] = api.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
    if nprobe is None:
        return api.SearchParameters(**args)
    return api.SearchParametersIVF(nprobe=nprobe, **args)


def score_recall(found_scores: np.ndarray, truth_scores: np.ndarray) -> float:
    """Share of the exact top-k reached: a found item counts when its score is at least the
    exact k-th score. Unlike id overlap this is not fooled by ties (e.g. the many items with a
    zero ALS vector, all scoring 0), where any of the tied items is an equally right answer."""
    threshold = truth_scores[:, -1:] - 1e-6 * np.maximum(1.0, np.abs(truth_scores[:, -1:]))
    found = np.where(np.isfinite(found_scores), found_scores, -np.inf)
    return float(np.mean((found >= threshold).sum(axis=1) / truth_scores.shape[1]))


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (ids, -1 = none) present in the same row of
    ``found``."""
    hits = total = 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], t, assume_unique=True))
        total += len(t)
    return hits / total if total else 1.0
