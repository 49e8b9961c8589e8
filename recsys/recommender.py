"""The hybrid recommender: candidates -> features -> ranker -> rules -> top-k, with reasons.

One :class:`HybridRecommender` serves the API, the batch CLI, offline evaluation and ranker
training, so what is measured offline is what is served. Build one with
:meth:`HybridRecommender.fit` (every part, from a dataset and a config) or
:meth:`HybridRecommender.load` (a bundle written by :meth:`HybridRecommender.save`).

>>> # rec = HybridRecommender.load("runs/demo/bundle")
>>> # rec.recommend(Request(user_id="u000042", cart=("i00007",), k=5)).items[0].reasons
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.config import HybridConfig, TrainConfig
from recsys.context import Context, Query, Recommendation, Request, Response
from recsys.data.idmap import IdMap
from recsys.errors import BundleError, DataError
from recsys.explain import feature_reasons, source_reasons
from recsys.features import FeatureSet
from recsys.history import HistoryIndex, UserEvents
from recsys.manifest import FitReport
from recsys.models.ranker import Ranker
from recsys.pool import CandidatePool, merge
from recsys.profile import FeatureProfile
from recsys.rules import category_cap, eligible_mask, mmr
from recsys.sources.base import Parts, Source, top_masked

if TYPE_CHECKING:
    from recsys.data.validate import Dataset
    from recsys.fit import Log
    from recsys.manifest import Manifest

__all__ = ["HybridRecommender", "Prepared", "Forgotten", "Request", "Response",
           "Recommendation", "SURFACES"]
_NONE = np.empty(0, np.int64)
# the lists a request can fill: everything as the ranker orders it, only items the shopper
# bought before, only items new to them; each has its own ranker, trained on its own target
SURFACES: tuple[str, ...] = ("for_you", "buy_again", "discover")
_STEP = 1e6      # composite pipelines: one step per source in the fallback order


@dataclass
class Prepared:
    """A request mapped to internal ids, with its candidate pool and features."""

    query: Query
    pool: CandidatePool
    features: np.ndarray
    fallback: bool
    warnings: list[str]
    surface: str = "for_you"
    leaves: np.ndarray | None = None     # ranker leaf per tree, for explanations

    @property
    def ctx(self) -> Context:
        return self.query.ctx


@dataclass
class Forgotten:
    """What :meth:`HybridRecommender.forget_user` removed."""

    history: bool      # the user had events in the history index (now dropped)
    factors: bool      # a model kept a vector of the user (now dropped)


class HybridRecommender:
    """The fitted parts, the enabled candidate sources, their features and a ranker per
    surface (the ``for_you`` one stands in for a surface without its own)."""

    def __init__(self, *, parts: Parts, history: HistoryIndex, users: IdMap,
                 type_weights: np.ndarray, sources: dict[str, Source], config: HybridConfig,
                 rankers: dict[str, Ranker] | None = None,
                 manifest: Manifest | None = None) -> None:
        self.parts, self.catalog = parts, parts.catalog
        self.items = parts.catalog.items
        self.history = history
        self.users = users                    # rows of the per-user model vectors
        self.type_weights = np.asarray(type_weights, dtype=np.float32)   # per event type code
        self.sources = sources
        self.config = config
        self.features = FeatureSet(tuple(sources), parts)
        self.keep = frozenset(n for n, s in sources.items() if s.always_in_pool)
        self.rankers: dict[str, Ranker] = {}
        for surface, ranker in (rankers or {}).items():
            self.set_ranker(ranker, surface)
        self.manifest = manifest
        # the served lists as the ranker saw them when it learned (drift monitoring)
        self.profile: FeatureProfile | None = None
        # what fitting learned about itself (a loaded bundle: its manifest's record)
        self.report: FitReport | None = FitReport.of(manifest) if manifest else None
        self.pipeline = "hybrid"
        self._active = tuple(sources)
        self.boost = np.zeros(len(self.items), np.float32)
        for item_id, mult in config.rules.boosts.items():
            if item_id in self.items and mult > 0:
                self.boost[self.items.to_internal([item_id])[0]] = np.log(mult)
        pinned = self.items.to_internal(list(config.rules.pinned_items), missing="minus_one")
        self.pinned = pinned[pinned >= 0]

    # ------------------------------------------------------------------ building
    @classmethod
    def fit(cls, data: Dataset | str | Path, config: TrainConfig | None = None, *,
            progress: bool = False, log: Log | None = None, workers: int | None = None
            ) -> HybridRecommender:
        """Fit every part from a dataset (a validated one, or its directory) and a config;
        ``workers``: processes for the rankers (default: every core; the result is the same)."""
        from recsys.fit import fit_hybrid

        return fit_hybrid(data, config or TrainConfig(), progress=progress, log=log,
                          workers=workers)

    @classmethod
    def load(cls, directory: str | Path) -> HybridRecommender:
        """Load a bundle written by :meth:`save` (checksums verified; BundleError names the
        file when it is broken)."""
        from recsys.bundle import load_bundle

        return load_bundle(directory)

    def save(self, directory: str | Path) -> Manifest:
        """Write the bundle; returns its manifest (also kept in :attr:`manifest`)."""
        from recsys.bundle import save_bundle

        self.manifest = save_bundle(self, directory)
        return self.manifest

    @property
    def ranker(self) -> Ranker | None:
        """The ``for_you`` ranker (None: sources fused by reciprocal rank)."""
        return self.rankers.get("for_you")

    def set_ranker(self, ranker: Ranker, surface: str = "for_you") -> None:
        if surface not in SURFACES:
            raise DataError(f"unknown surface {surface!r} (expected one of "
                            f"{', '.join(SURFACES)})")
        if tuple(ranker.feature_names_) != self.features.names:
            missing = sorted(set(self.features.names) - set(ranker.feature_names_))
            extra = sorted(set(ranker.feature_names_) - set(self.features.names))
            raise BundleError(f"the ranker was trained on other features than this code "
                              f"computes (missing {missing}, unknown {extra}, or another "
                              f"order); retrain with this version of recsys")
        self.rankers[surface] = ranker

    @property
    def pipelines(self) -> dict[str, tuple[str, ...]]:
        """``hybrid`` (every source and the ranker), each source alone by its own score, and
        the fallback baselines a source leads (e.g. buy again, then popular) when all of
        their sources are enabled."""
        out = {"hybrid": tuple(self.sources)}
        for name, source in self.sources.items():
            out[source.pipeline_name()] = (name,)
            for pipeline, chain in source.extra_pipelines.items():
                if all(s in self.sources for s in chain):
                    out[pipeline] = chain
        return out

    def variant(self, pipeline: str) -> HybridRecommender:
        """The same fitted parts running another pipeline (a baseline or an A/B variant)."""
        pipelines = self.pipelines
        if pipeline not in pipelines:
            raise DataError(f"unknown pipeline {pipeline!r} (expected one of "
                            f"{', '.join(pipelines)})")
        other = copy.copy(self)
        other.pipeline, other._active = pipeline, pipelines[pipeline]
        return other

    # ------------------------------------------------------------------ request -> query
    def _internal(self, ids: tuple[str, ...] | list[str], what: str,
                  warnings: list[str]) -> np.ndarray:
        if not ids:
            return _NONE
        internal = self.items.to_internal(list(ids), missing="minus_one")
        unknown = [i for i, v in zip(ids, internal, strict=True) if v < 0]
        if unknown:
            warnings.append(f"unknown {what} ignored: {', '.join(map(str, unknown[:10]))}")
        return internal[internal >= 0][-self.config.max_context_items:]

    def _user_row(self, user_id: str | None) -> int:
        if user_id is None:
            return -1
        return int(self.users.to_internal([user_id], missing="minus_one")[0])

    def _has_vector(self, row: int) -> bool:
        return row >= 0 and any(space.model.user_vector(row, _NONE, _NONE) is not None
                                for space in self.parts.spaces.values())

    def context(self, request: Request, history: UserEvents | None = None
                ) -> tuple[Context, list[str]]:
        """Map a request to internal terms; ``history`` overrides the stored one (training)."""
        warnings: list[str] = []
        ts = request.timestamp
        now = None if ts is None else int(ts.timestamp())
        if history is None:
            history = self.history.slice(request.user_id, before=now)
        current = self._internal((request.current_item,) if request.current_item else (),
                                 "current_item", warnings)
        row = self._user_row(request.user_id)
        ctx = Context(now, request.device, self._internal(request.cart, "cart items", warnings),
                      current, self._internal(request.recent_views, "recent views", warnings),
                      history, row, len(history) > 0 or self._has_vector(row))
        return ctx, warnings

    def prepare(self, request: Request, history: UserEvents | None = None) -> Prepared:
        """Context, eligibility, candidates and features: shared by serving and training."""
        if request.surface not in SURFACES:
            raise DataError(f"unknown surface {request.surface!r} (expected one of "
                            f"{', '.join(SURFACES)})")
        ctx, warnings = self.context(request, history)
        f = request.filters
        exclude = self._internal(f.exclude_items, "exclude_items", []) if f.exclude_items \
            else _NONE
        purchased = ctx.baskets.items
        mask = eligible_mask(self.catalog, self.config.rules, now=ctx.now, purchased=purchased,
                             filters=f,
                             exclude_ids=np.concatenate([exclude, ctx.cart]).astype(np.int64))
        if request.surface == "buy_again":
            bought = np.zeros(len(mask), dtype=bool)
            bought[purchased] = True
            mask &= bought
        elif request.surface == "discover":
            mask[purchased] = False
        query = Query(ctx, mask, self.type_weights)
        pool = self.candidates(query)
        return Prepared(query, pool, self.features.build(pool, ctx), not ctx.known_user,
                        warnings, request.surface)

    def candidates(self, query: Query) -> CandidatePool:
        """Every active source's proposals, merged; a single-source pipeline asks its source
        deep enough to fill the pool."""
        single = self.pipeline != "hybrid"
        results = {}
        for name in self._active:
            depth = self.config.candidates if single else self.config.sources[name].depth
            if depth:
                results[name] = self.sources[name].propose(query, depth)
        return merge(results, self.features.sources, self.config.candidates, self.keep)

    # ------------------------------------------------------------------ scoring
    def score_pool(self, prepared: Prepared) -> np.ndarray:
        pool = prepared.pool
        if self.pipeline != "hybrid" and len(self._active) == 1:    # a source by its score
            col = pool.scores[:, pool.column(self._active[0])]
            return np.where(np.isnan(col), -np.inf, col).astype(np.float32)
        if self.pipeline != "hybrid":     # a fallback chain: source by source, rank by rank
            scores = np.full(len(pool), -np.inf)
            for step, name in enumerate(reversed(self._active)):
                rank = pool.ranks[:, pool.column(name)]
                scores = np.where(rank > 0, (step + 1) * _STEP - rank, scores)
            return scores.astype(np.float32)
        ranker = self.rankers.get(prepared.surface) or self.ranker
        if ranker is not None:
            scores, prepared.leaves = ranker.score_leaves(prepared.features)
            return scores
        ranks = pool.ranks    # no ranker: reciprocal-rank fusion of the sources
        fused = np.where(ranks > 0, 1.0 / (self.config.rank_fusion_k + ranks), 0.0)
        return fused.sum(axis=1).astype(np.float32)

    def recommend(self, request: Request, *, explain: bool = True,
                  history: UserEvents | None = None, with_features: bool = False) -> Response:
        """Top-k for ``request``. ``history`` replaces the stored one (e.g. with events that
        arrived after the bundle was fitted); ``with_features`` returns the feature rows of
        the items served and their pool (for drift monitoring)."""
        if not 1 <= request.k <= self.config.max_k:
            raise DataError(f"k = {request.k} (expected 1..{self.config.max_k})")
        prep = self.prepare(request, history)
        pool = prep.pool
        if len(pool) == 0:
            return Response([], prep.fallback, prep.warnings + ["no eligible items"])
        scores = self.score_pool(prep) + self.boost[pool.ids]
        order = np.lexsort((pool.ids, -scores))
        rules = self.config.rules
        pins = [int(np.flatnonzero(pool.ids == p)[0]) for p in self.pinned
                if prep.query.mask[p] and p in pool.ids]
        if rules.mmr_lambda is not None:
            head = order[: max(request.k * rules.mmr_head_factor, rules.mmr_head_min)]
            order = head[mmr(pool.ids[head], scores[head], self.item_embeddings(), request.k,
                             rules.mmr_lambda)]
        if rules.max_per_category is not None:
            order = category_cap(order, self.catalog.category_codes[pool.ids],
                                 rules.max_per_category, request.k)
        chosen = list(dict.fromkeys(pins + order[: request.k + len(pins)].tolist()))[: request.k]
        out = []
        reasons: list[list[str]] = (self._reasons(prep, chosen, pins) if explain
                                    else [[] for _ in chosen])
        for rank, (pos, why) in enumerate(zip(chosen, reasons, strict=True), start=1):
            out.append(Recommendation(str(self.items.external_ids[pool.ids[pos]]),
                                      float(scores[pos]), rank, why))
        if with_features:
            return Response(out, prep.fallback, prep.warnings, prep.features[chosen],
                            scores[chosen])
        return Response(out, prep.fallback, prep.warnings)

    def _reasons(self, prep: Prepared, chosen: list[int], pins: list[int]) -> list[list[str]]:
        pool = prep.pool
        ranker = self.rankers.get(prep.surface) or self.ranker
        contrib = (ranker.explain_leaves(prep.leaves[chosen])
                   if ranker is not None and prep.leaves is not None and chosen else None)
        by_contrib = (np.argsort(-contrib, axis=1, kind="stable") if contrib is not None
                      else None)    # features by contribution, largest first, all rows at once
        out = []
        for row, pos in enumerate(chosen):
            category = self.catalog.category_of(int(pool.ids[pos]))
            reasons = source_reasons(pool, pos, prep.query, self.sources)
            if contrib is not None and by_contrib is not None:
                extra = feature_reasons(contrib[row], prep.features[pos], category,
                                        self.features, order=by_contrib[row])
                reasons += [r for r in extra if r not in reasons]
            if pos in pins:
                reasons.insert(0, "featured by the shop")
            out.append(reasons or ["recommended for you"])
        return out

    def similar_items(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Product-page neighbours: content and CF cosine blended (CF only where it has a
        vector); eligibility rules (stock) apply."""
        if item_id not in self.items:
            raise DataError(f"unknown item_id {item_id!r}")
        if not 1 <= k <= self.config.max_k:
            raise DataError(f"k = {k} (expected 1..{self.config.max_k})")
        i = int(self.items.to_internal([item_id])[0])
        content, cf = self.item_embeddings(), self.parts.spaces["cf"].unit
        sims = content @ content[i]
        if np.any(cf[i]):
            w = self.config.similar_cf_weight
            sims = (1 - w) * sims + w * (cf @ cf[i])
        mask = self.catalog.in_stock & self.catalog.listed
        mask[i] = False
        res = top_masked(sims, mask, k)
        cat, name = self.catalog.category_codes, self.catalog.name(i)
        return [Recommendation(str(self.items.external_ids[j]), float(s), r,
                               [f"similar to {name}", f"in {self.catalog.category_of(i)}"]
                               if cat[j] == cat[i] else [f"similar to {name}"])
                for r, (j, s) in enumerate(zip(res.ids, res.scores, strict=True), start=1)]

    def update_catalog(self, changes: pd.DataFrame) -> HybridRecommender:
        """A recommender with catalog ``changes`` applied (prices, stock, categories, titles,
        new items embedded from their metadata, ``listed = false`` to delist); this one is left
        as it is. See :mod:`recsys.catalog_update`."""
        from recsys.catalog_update import update_catalog

        return update_catalog(self, changes)

    # ------------------------------------------------------------------ what else is asked
    def item_embeddings(self) -> np.ndarray:
        """Content embeddings (unit rows) of every item: diversity, similarity."""
        return self.parts.spaces["content"].unit

    def cold_items(self) -> np.ndarray:
        """True for items with no event in the popularity model's window."""
        return self.parts.popularity.item_popularity("all_time") == 0

    def is_known(self, user_id: str) -> bool:
        """The user has stored events or a model vector."""
        return len(self.history.slice(user_id)) > 0 or self._has_vector(self._user_row(user_id))

    def sample_users(self, n: int) -> list[str]:
        return self.history.sample_users(n)

    def forget_user(self, user_id: str) -> Forgotten:
        """Drop the user's history (copy-on-write: requests running now see the old or the new
        index, never a half-edited one) and every model vector of theirs; the user is then
        unknown, and no reason claims to know them."""
        had_history = len(self.history.slice(user_id)) > 0
        if had_history:
            self.history = self.history.without_user(user_id)
        row = self._user_row(user_id)
        forgot = [space.model.forget_user(row) for space in self.parts.spaces.values()] \
            if row >= 0 else []
        return Forgotten(had_history, any(forgot))
