"""The hybrid recommender: candidates -> features -> ranker -> rules -> top-k, with reasons.

One :class:`Recommender` serves the API, the batch CLI, offline evaluation and ranker training,
so what is measured offline is what is served.

>>> # rec = Recommender.from_bundle(load_bundle("runs/demo/bundle"))
>>> # rec.recommend(Request(user_id="u000042", cart=("i00007",), k=5)).items[0].reasons
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recsys import candidates as cs
from recsys import columns as C
from recsys.configfile import StrictModel
from recsys.copurchase import CoPurchase, CoPurchaseConfig
from recsys.data.idmap import IdMap
from recsys.errors import DataError
from recsys.explain import feature_reasons, source_reasons
from recsys.features import FEATURES, Context, ItemStats, build_features
from recsys.history import PURCHASE, HistoryIndex, UserEvents
from recsys.models.content import ContentModel
from recsys.models.mf import MFModel
from recsys.models.ranker import Ranker, RankerConfig
from recsys.retrieval import ItemIndex, RetrievalConfig
from recsys.rules import CatalogArrays, Filters, RulesConfig, category_cap, eligible_mask, mmr

TIMES_BOUGHT = FEATURES.index("times_bought")


class SourceDepth(StrictModel):
    """How many candidates each source proposes before the pool is cut to ``candidates``."""

    cf: int = Field(100, ge=0)
    content: int = Field(60, ge=0)
    i2i_cf: int = Field(40, ge=0)
    i2i_content: int = Field(40, ge=0)
    copurchase: int = Field(40, ge=0)
    buyagain: int = Field(30, ge=0)
    popular: int = Field(30, ge=0)
    trending: int = Field(20, ge=0)
    popular_cat: int = Field(30, ge=0)


# A pipeline is what one A/B variant or baseline runs: "hybrid" is every source plus the
# ranker; the others rank a single source's candidates by that source's own score, through the
# same rules, so baselines and the hybrid are compared on equal terms.
PIPELINES: dict[str, tuple[str, ...]] = {
    "hybrid": cs.SOURCES,
    "popularity": ("popular",),
    "als": ("cf",),
    "content": ("content",),
}


class HybridConfig(StrictModel):
    candidates: int = Field(200, ge=1, le=5000)
    depth: SourceDepth = Field(default_factory=SourceDepth)
    max_context_items: int = Field(50, ge=1)     # cart + views used per request
    max_k: int = Field(100, ge=1)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    copurchase: CoPurchaseConfig = Field(default_factory=CoPurchaseConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)


@dataclass(frozen=True)
class Request:
    """A recommendation request in external ids. ``timestamp`` None = now/unknown."""

    user_id: str | None = None
    session_id: str | None = None
    timestamp: pd.Timestamp | None = None
    device: str | None = None
    cart: tuple[str, ...] = ()
    current_item: str | None = None
    recent_views: tuple[str, ...] = ()
    k: int = 10
    filters: Filters = field(default_factory=Filters)


@dataclass
class Recommendation:
    item_id: str
    score: float
    rank: int
    reasons: list[str]


@dataclass
class Response:
    items: list[Recommendation]
    fallback: bool
    warnings: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """A request mapped to internal ids, with its candidate pool and features."""

    ctx: Context
    mask: np.ndarray
    pool: cs.CandidatePool
    features: np.ndarray
    fallback: bool
    warnings: list[str]
    leaves: np.ndarray | None = None     # ranker leaf per tree, for explanations


class Recommender:
    """Holds the fitted parts; builds FAISS indexes over the CF and content item vectors."""

    def __init__(self, *, items: IdMap, item_table: pd.DataFrame, mf: MFModel,
                 content: ContentModel, copurchase: CoPurchase, history: HistoryIndex,
                 stats: ItemStats, weights: np.ndarray, config: HybridConfig | None = None,
                 ranker: Ranker | None = None, mf_users: IdMap | None = None,
                 indexes: dict[str, ItemIndex] | None = None) -> None:
        self.config = config or HybridConfig()
        self.items, self.item_table = items, item_table
        self.mf, self.content, self.copurchase = mf, content, copurchase
        self.history, self.stats, self.ranker = history, stats, ranker
        self.mf_users = mf_users
        self.weights = np.asarray(weights, dtype=np.float32)   # per event-type code
        self.titles = item_table[C.TITLE].astype(str).to_numpy()
        cats = pd.factorize(item_table[C.CATEGORY].astype(str))
        self.catalog = CatalogArrays(cats[0].astype(np.int32), np.asarray(cats[1]),
                                     stats.price, item_table[C.IN_STOCK].to_numpy(bool),
                                     stats.first_seen)
        assert mf.item_factors_ is not None and content.item_embeddings_ is not None
        self.cf_vectors = np.ascontiguousarray(mf.item_factors_, dtype=np.float32)
        self.embeddings = np.ascontiguousarray(content.item_embeddings_, dtype=np.float32)
        norms = np.linalg.norm(self.cf_vectors, axis=1, keepdims=True)
        self.cf_unit = np.divide(self.cf_vectors, norms, out=np.zeros_like(self.cf_vectors),
                                 where=norms > 0)
        self.indexes = indexes or {
            "cf": ItemIndex.build(self.cf_vectors, self.config.retrieval),
            "content": ItemIndex.build(self.embeddings, self.config.retrieval),
        }
        self.pop_order = np.argsort(-stats.pop_all, kind="stable")
        self.trend_order = np.argsort(-(stats.trend + 0.1 * stats.pop_7d), kind="stable")
        order = np.lexsort((-stats.pop_all, self.catalog.category_codes))
        self.cat_order = order
        self.cat_offsets = np.searchsorted(self.catalog.category_codes[order],
                                           np.arange(len(self.catalog.categories) + 1))
        self.boost = np.zeros(len(items), np.float32)
        for item_id, mult in self.config.rules.boosts.items():
            if item_id in items and mult > 0:
                self.boost[items.to_internal([item_id])[0]] = np.log(mult)
        self.pinned = items.to_internal(list(self.config.rules.pinned_items),
                                        missing="minus_one")
        self.pinned = self.pinned[self.pinned >= 0]
        self.pipeline = "hybrid"

    def variant(self, pipeline: str) -> Recommender:
        """The same fitted parts running another pipeline (a baseline or an A/B variant)."""
        if pipeline not in PIPELINES:
            raise DataError(f"unknown pipeline {pipeline!r} (expected one of "
                            f"{', '.join(PIPELINES)})")
        other = copy.copy(self)
        other.pipeline = pipeline
        return other

    # ------------------------------------------------------------------ request -> context
    def _internal(self, ids: tuple[str, ...] | list[str], what: str,
                  warnings: list[str]) -> np.ndarray:
        if not ids:
            return np.empty(0, np.int64)
        internal = self.items.to_internal(list(ids), missing="minus_one")
        unknown = [i for i, v in zip(ids, internal, strict=True) if v < 0]
        if unknown:
            warnings.append(f"unknown {what} ignored: {', '.join(map(str, unknown[:10]))}")
        return internal[internal >= 0][-self.config.max_context_items:]

    def context(self, request: Request, history: UserEvents | None = None
                ) -> tuple[Context, list[str]]:
        """Map a request to internal terms; ``history`` overrides the stored one (training)."""
        warnings: list[str] = []
        ts = request.timestamp
        now = None if ts is None else int(pd.Timestamp(ts).timestamp())
        if history is None:
            history = self.history.slice(request.user_id, before=now)
        current = self._internal((request.current_item,) if request.current_item else (),
                                 "current_item", warnings)
        ctx = Context(now, request.device, self._internal(request.cart, "cart items", warnings),
                      current, self._internal(request.recent_views, "recent views", warnings),
                      history, request.user_id is not None and (
                          request.user_id in self.history or (self.mf_users is not None
                                                              and request.user_id in
                                                              self.mf_users)))
        return ctx, warnings

    def _profile(self, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
        """History + context as (items, summed weights): views, the current item (as a click)
        and cart items (as add-to-carts) count like the events they are."""
        items = np.concatenate([ctx.history.items, ctx.views, ctx.current, ctx.cart])
        w = np.concatenate([self.weights[ctx.history.types],
                            np.full(len(ctx.views), self.weights[0]),
                            np.full(len(ctx.current), self.weights[1]),
                            np.full(len(ctx.cart), self.weights[2])])
        if len(items) == 0:
            return items, np.empty(0, np.float32)
        uniq, inv = cs.unique_inverse(items)
        return uniq, np.bincount(inv, w, minlength=len(uniq)).astype(np.float32)

    def _row(self, items: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((weights, items, np.array([0, len(items)])),
                             shape=(1, len(self.items)), dtype=np.float32)

    # ------------------------------------------------------------------ candidates
    def _search(self, name: str, n_allowed: int) -> cs.SearchFn:
        index = self.indexes[name]

        def run(query: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return index.search_trusted(query, k, mask, n_allowed)
        return run

    def _user_cf(self, request_user: str | None, items: np.ndarray, weights: np.ndarray
                 ) -> np.ndarray | None:
        if self.mf_users is not None and request_user is not None and request_user in self.mf_users:
            assert self.mf.user_factors_ is not None
            return self.mf.user_factors_[self.mf_users.to_internal([request_user])[0]]
        if len(items) == 0:
            return None
        return self.mf.fold_in(self._row(items, weights))

    def _user_content(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """The content model's user vector: normalised weighted sum of item embeddings."""
        if len(items) == 0:
            return None
        vec = weights @ self.embeddings[items]
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else None

    def candidates(self, request_user: str | None, ctx: Context, mask: np.ndarray
                   ) -> cs.CandidatePool:
        d = self.config.depth
        active = PIPELINES[self.pipeline]
        if self.pipeline != "hybrid":   # one source, deep enough to fill the pool
            d = SourceDepth(**{name: (self.config.candidates if name in active else 0)
                               for name in SourceDepth.model_fields})
        items, weights = self._profile(ctx)
        results: dict[str, cs.SourceResult] = {}
        n_allowed = int(np.count_nonzero(mask))
        search_cf, search_content = self._search("cf", n_allowed), self._search("content",
                                                                                 n_allowed)
        user_cf = self._user_cf(request_user, items, weights) if d.cf else None
        results["cf"] = cs.from_search(search_cf, user_cf, mask, d.cf)
        user_content = self._user_content(items, weights) if d.content else None
        results["content"] = cs.from_search(search_content, user_content, mask, d.content)
        context_items = ctx.context_items
        if len(context_items) and (d.i2i_cf or d.i2i_content):
            for name, vectors, search in (("i2i_cf", self.cf_unit, search_cf),
                                          ("i2i_content", self.embeddings, search_content)):
                query = vectors[context_items].mean(axis=0)
                res = cs.from_search(search, query if np.any(query) else None, mask,
                                     getattr(d, name))
                sims = vectors[res.ids] @ vectors[context_items].T
                res.via = context_items[np.argmax(sims, axis=1)] if len(res.ids) else None
                results[name] = res
        bought = ctx.history.items[ctx.history.types == PURCHASE]
        seeds = np.unique(np.concatenate([context_items, bought[-5:]]))
        if len(seeds) and d.copurchase:
            ids, scores, via = self.copurchase.scores_for(seeds)
            results["copurchase"] = cs.from_pairs(ids, scores, mask, d.copurchase, via)
        if len(bought) and ctx.now is not None:
            times = ctx.history.times[ctx.history.types == PURCHASE]
            recency = np.power(0.5, (ctx.now - times) / (30 * 86400.0))
            uniq, inv = cs.unique_inverse(bought)
            results["buyagain"] = cs.from_pairs(uniq, np.bincount(inv, recency), mask,
                                                d.buyagain)
        elif len(bought):
            uniq, counts = np.unique(bought, return_counts=True)
            results["buyagain"] = cs.from_pairs(uniq, counts.astype(np.float32), mask, d.buyagain)
        results["popular"] = cs.top_of_list(self.pop_order, self.stats.pop_all, mask, d.popular)
        results["trending"] = cs.top_of_list(self.trend_order, self.stats.trend, mask, d.trending)
        results["popular_cat"] = self._popular_in_categories(ctx, mask, d.popular_cat)
        return cs.merge(results, self.config.candidates)

    def _popular_in_categories(self, ctx: Context, mask: np.ndarray, k: int) -> cs.SourceResult:
        items = np.concatenate([ctx.history.items, ctx.context_items])
        if len(items) == 0 or k == 0:
            return cs.SourceResult(np.empty(0, np.int64), np.empty(0, np.float32))
        counts = np.bincount(self.catalog.category_codes[items],
                             minlength=len(self.catalog.categories))
        top = np.argsort(-counts, kind="stable")[:3]   # ties: the lower category code first
        top = top[counts[top] > 0]
        share = counts[top] / counts[top].sum()
        ids, scores = [], []
        for c, s in zip(top, share, strict=True):
            members = cs.first_allowed(self.cat_order[self.cat_offsets[c]:self.cat_offsets[c + 1]],
                                       mask, max(1, int(round(k * s))))
            ids.append(members)
            scores.append(s * self.stats.pop_all[members])
        return cs.from_pairs(np.concatenate(ids), np.concatenate(scores), mask, k)

    # ------------------------------------------------------------------ ranking
    def prepare(self, request: Request, history: UserEvents | None = None) -> Prepared:
        """Context, eligibility, candidates and features: shared by serving and training."""
        ctx, warnings = self.context(request, history)
        f = request.filters
        exclude = self._internal(f.exclude_items, "exclude_items", []) if f.exclude_items else \
            np.empty(0, np.int64)
        mask = eligible_mask(self.catalog, self.config.rules, now=ctx.now,
                             purchased=ctx.history.purchased(), filters=f,
                             exclude_ids=np.concatenate([exclude, ctx.cart]).astype(np.int64))
        pool = self.candidates(request.user_id, ctx, mask)
        features = build_features(pool, ctx, self.stats, self.embeddings)
        fallback = not ctx.known_user
        return Prepared(ctx, mask, pool, features, fallback, warnings)

    def score_pool(self, prepared: Prepared) -> np.ndarray:
        if self.pipeline != "hybrid":
            col = prepared.pool.scores[:, prepared.pool.column(PIPELINES[self.pipeline][0])]
            return np.where(np.isnan(col), -np.inf, col).astype(np.float32)
        if self.ranker is not None:
            scores, prepared.leaves = self.ranker.score_leaves(prepared.features)
            return scores
        # no ranker yet: reciprocal-rank fusion of the sources
        ranks = prepared.pool.ranks
        return np.where(ranks > 0, 1.0 / (60.0 + ranks), 0.0).sum(axis=1).astype(np.float32)

    def recommend(self, request: Request, *, explain: bool = True) -> Response:
        if not 1 <= request.k <= self.config.max_k:
            raise DataError(f"k = {request.k} (expected 1..{self.config.max_k})")
        prep = self.prepare(request)
        pool = prep.pool
        if len(pool) == 0:
            return Response([], prep.fallback, prep.warnings + ["no eligible items"])
        scores = self.score_pool(prep) + self.boost[pool.ids]
        order = np.lexsort((pool.ids, -scores))
        rules = self.config.rules
        pins = [int(np.flatnonzero(pool.ids == p)[0]) for p in self.pinned
                if prep.mask[p] and p in pool.ids]
        if rules.mmr_lambda is not None:
            head = order[: max(request.k * 5, 50)]
            order = head[mmr(pool.ids[head], scores[head], self.embeddings, request.k,
                             rules.mmr_lambda)]
        if rules.max_per_category is not None:
            order = category_cap(order, self.catalog.category_codes[pool.ids],
                                 rules.max_per_category, request.k)
        chosen = list(dict.fromkeys(pins + order[: request.k + len(pins)].tolist()))[: request.k]
        contrib = (self.ranker.explain_leaves(prep.leaves[chosen])
                   if explain and self.ranker is not None and prep.leaves is not None
                   and chosen else None)
        if contrib is not None:   # features by contribution, largest first, for all rows at once
            by_contrib = np.argsort(-contrib, axis=1, kind="stable")
        out = []
        for rank, pos in enumerate(chosen, start=1):
            item = int(pool.ids[pos])
            cat = str(self.catalog.categories[self.catalog.category_codes[item]])
            reasons = []
            if explain:
                reasons = source_reasons(pool, pos, prep.ctx, self._name, cat,
                                         int(prep.features[pos, TIMES_BOUGHT]))
                if contrib is not None:
                    extra = feature_reasons(contrib[rank - 1], prep.features[pos], cat,
                                            order=by_contrib[rank - 1])
                    reasons += [r for r in extra if r not in reasons]
                if pos in pins:
                    reasons.insert(0, "featured by the shop")
                reasons = reasons or ["recommended for you"]
            out.append(Recommendation(str(self.items.external_ids[item]), float(scores[pos]),
                                      rank, reasons))
        return Response(out, prep.fallback, prep.warnings)

    def _name(self, item: int) -> str:
        return f"'{self.titles[item]}' ({self.items.external_ids[item]})"

    def similar_items(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Product-page neighbours: content and CF cosine blended (CF only where it has a
        vector); eligibility rules (stock) apply."""
        if item_id not in self.items:
            raise DataError(f"unknown item_id {item_id!r}")
        if not 1 <= k <= self.config.max_k:
            raise DataError(f"k = {k} (expected 1..{self.config.max_k})")
        i = int(self.items.to_internal([item_id])[0])
        sims = self.embeddings @ self.embeddings[i]
        if np.any(self.cf_unit[i]):
            sims = 0.5 * sims + 0.5 * (self.cf_unit @ self.cf_unit[i])
        mask = self.catalog.in_stock.copy()
        mask[i] = False
        res = cs.top_masked(sims, mask, k)
        cat = str(self.catalog.categories[self.catalog.category_codes[i]])
        return [Recommendation(str(self.items.external_ids[j]), float(s), r,
                               [f"similar to {self._name(i)}", f"in {cat}"]
                               if self.catalog.category_codes[j] == self.catalog.category_codes[i]
                               else [f"similar to {self._name(i)}"])
                for r, (j, s) in enumerate(zip(res.ids, res.scores, strict=True), start=1)]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> list[str]:
        """The hybrid's own parts (models are saved by the bundle): config, co-purchase,
        item stats, history, ranker, FAISS indexes."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hybrid.json").write_text(json.dumps({
            "config": self.config.model_dump(mode="json"),
            "weights": self.weights.tolist(),
            "indexes": {n: idx.build_info_ for n, idx in self.indexes.items()}}, indent=2))
        files = ["hybrid.json"]
        files += self.copurchase.save(directory)
        files += self.stats.save(directory)
        files += self.history.save(directory)
        if self.ranker is not None:
            files += self.ranker.save(directory)
        for name, index in self.indexes.items():
            sub = directory / f"index_{name}"
            sub.mkdir(exist_ok=True)
            files += [f"index_{name}/{f}" for f in index.save(sub)]
        return files

    @classmethod
    def load(cls, directory: Path, *, items: IdMap, item_table: pd.DataFrame, mf: MFModel,
             content: ContentModel, mf_users: IdMap) -> Recommender:
        meta = json.loads((directory / "hybrid.json").read_text())
        config = HybridConfig.model_validate(meta["config"])
        ranker = Ranker.load(directory) if (directory / "ranker.txt").exists() else None
        indexes = {n: ItemIndex.load(directory / f"index_{n}") for n in meta["indexes"]}
        return cls(items=items, item_table=item_table, mf=mf, content=content,
                   copurchase=CoPurchase.load(directory, config.copurchase),
                   history=HistoryIndex.load(directory), stats=ItemStats.load(directory),
                   weights=np.asarray(meta["weights"], np.float32), config=config,
                   ranker=ranker, mf_users=mf_users, indexes=indexes)


def load_recommender(bundle_dir: str | Path) -> tuple[Recommender, dict[str, object]]:
    """Load a bundle written by ``recsys train`` (checksums verified) as a Recommender, plus
    its manifest. Raises BundleError naming the file when the bundle is broken."""
    from recsys.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    mf, content = bundle.models["als"], bundle.models["content"]
    assert isinstance(mf, MFModel) and isinstance(content, ContentModel)
    rec = Recommender.load(bundle.directory / "hybrid", items=bundle.items,
                           item_table=bundle.item_table, mf=mf, content=content,
                           mf_users=bundle.users)
    return rec, bundle.manifest
