"""Offline evaluation through the serving code path.

For every shopper with history who bought something in the evaluation window, ask
:class:`~recsys.recommender.HybridRecommender` for a top-k list as of the window's start
(history = everything before it, no session context), for the hybrid and for each baseline
pipeline (same fitted parts, same rules), on each surface, then score the lists against what
the shopper bought in the window: every purchase (``for_you``), re-purchases only
(``buy_again``) or items new to them only (``discover``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from evaluation import beyond
from evaluation.business import business_metrics
from evaluation.ranking import ranking_metrics
from recsys import columns as C
from recsys.errors import DataError
from recsys.history import PURCHASE
from recsys.recommender import HybridRecommender, Request


@dataclass
class EvalWindow:
    """Users and their window events, aligned: row i of every list is ``users[i]``."""

    users: np.ndarray                     # external ids
    start: pd.Timestamp
    relevant: list[np.ndarray]            # internal ids of purchased items (all)
    relevant_new: list[np.ndarray]        # ... excluding items the user bought before
    events: pd.DataFrame                  # user_id = row index, item_id internal, type, price
    returning: np.ndarray                 # bool: user has history before the window
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    priced: bool = True                   # False: the shop has no prices, revenue is not measured

    @property
    def relevant_repeat(self) -> list[np.ndarray]:
        """Purchased items the user had bought before the window."""
        return [np.setdiff1d(a, n, assume_unique=True)
                for a, n in zip(self.relevant, self.relevant_new, strict=True)]

    def target(self, surface: str) -> list[np.ndarray]:
        """What a surface is scored against."""
        if surface == "buy_again":
            return self.relevant_repeat
        return self.relevant_new if surface == "discover" else self.relevant


def make_window(rec: HybridRecommender, window_events: pd.DataFrame, *, start: pd.Timestamp,
                max_users: int | None = None, seed: int = 0,
                with_history: bool = True, priced: bool = True) -> EvalWindow:
    """Users with at least one purchase in ``window_events`` (and, by default, some history
    before ``start``: whom a shop can recommend to at that instant), sampled to
    ``max_users``. ``priced=False``: the shop has no prices (revenue is not measured)."""
    ev = window_events.copy()
    ev[C.USER_ID] = ev[C.USER_ID].astype(str)
    ev["item"] = rec.items.to_internal(ev[C.ITEM_ID], missing="minus_one")
    ev = ev[ev["item"] >= 0]
    buyers = np.sort(ev.loc[ev[C.EVENT_TYPE].astype(str) == C.PURCHASE, C.USER_ID].unique())
    before = int(pd.Timestamp(start).timestamp())
    if with_history:
        buyers = np.array([u for u in buyers if len(rec.history.slice(u, before=before))],
                          dtype=object)
    if max_users is not None and len(buyers) > max_users:
        buyers = np.sort(np.random.default_rng(seed).choice(buyers, max_users, replace=False))
    row = {u: i for i, u in enumerate(buyers)}
    ev = ev[ev[C.USER_ID].isin(row)]
    ev["row"] = ev[C.USER_ID].map(row).astype(np.int64)
    bought = ev[ev[C.EVENT_TYPE].astype(str) == C.PURCHASE].groupby("row")["item"].agg(
        lambda s: np.unique(s.to_numpy()))
    relevant = [bought.get(i, np.empty(0, np.int64)) for i in range(len(buyers))]
    relevant_new, returning = [], np.zeros(len(buyers), dtype=bool)
    for i, u in enumerate(buyers):
        hist = rec.history.slice(u, before=before)
        returning[i] = len(hist) > 0
        past = hist.items[hist.types == PURCHASE]
        relevant_new.append(np.setdiff1d(relevant[i], past))
    events = pd.DataFrame({
        "user_id": ev["row"].to_numpy(), "item_id": ev["item"].to_numpy(),
        "event_type": ev[C.EVENT_TYPE].astype(str).to_numpy(),
        "price": ev[C.PRICE].to_numpy(np.float64), "quantity": ev[C.QUANTITY].to_numpy()})
    return EvalWindow(buyers, pd.Timestamp(start), relevant, relevant_new, events, returning,
                      priced=priced)


def recommend_lists(rec: HybridRecommender, window: EvalWindow, k: int, *,
                    surface: str = "for_you", progress: bool = False,
                    desc: str = "") -> np.ndarray:
    """(n_users x k) internal ids, -1 padded, as the API would have answered at window start."""
    out = np.full((len(window.users), k), -1, dtype=np.int64)
    for i, user in enumerate(tqdm(window.users, disable=not progress, desc=desc,
                                  mininterval=2.0)):
        response = rec.recommend(Request(user_id=str(user), timestamp=window.start, k=k,
                                         surface=surface), explain=False)
        ids = rec.items.to_internal([r.item_id for r in response.items])
        out[i, : len(ids)] = ids
    return out


def score_lists(recs: np.ndarray, window: EvalWindow, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean ranking (all and new-to-user items) and business metrics at each k."""
    out: dict[str, float] = {}
    for k in ks:
        for name, values in ranking_metrics(recs, window.relevant, k).items():
            out[name] = float(np.nanmean(values))
        for name, values in ranking_metrics(recs, window.relevant_new, k).items():
            out[f"new_{name}"] = float(np.nanmean(values))
        biz = business_metrics(recs, window.events, k, revenue=window.priced)
        for name, values in biz.items():
            if name != "orders":
                out[name] = float(np.nanmean(values))
    return out


# ---------------------------------------------------------------------------------------------
# Full evaluation of several pipelines: per-user arrays for every metric, so the same arrays feed
# the means, the bootstrap CIs, the paired tests and the per-segment tables.

PER_USER_RANKING = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
PER_USER_BUSINESS = ("ctr", "conversion", "purchase_precision", "revenue_per_rec",
                     "revenue_per_user", "aov")
PER_USER_BEYOND = ("ild_category", "ild_embedding", "novelty", "serendipity", "mean_popularity")
CATALOG = ("coverage", "gini")
ORDERS = "orders"   # per-user attributed orders (pools the AOV); kept out of the tables


@dataclass
class ModelResult:
    """One pipeline's lists and metrics on an :class:`EvalWindow`.

    ``per_user[f"{name}@{k}"]`` holds one float per window user (NaN where undefined; see
    ``docs/metrics.md``); ``catalog`` the catalogue-level values (coverage, Gini).
    """

    name: str
    lists: dict[int, np.ndarray]
    per_user: dict[str, np.ndarray]
    catalog: dict[str, float]
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def means(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """Means over users (or the ``rows`` subset), NaN skipped; AOV pooled as total revenue /
        total orders (:func:`evaluation.business.business_summary`). Catalogue metrics are only
        included for the whole window."""
        out: dict[str, float] = {}
        for name, values in self.per_user.items():
            if name.startswith(ORDERS):
                continue
            v = values if rows is None else values[rows]
            if name.startswith("aov@"):
                k = name.split("@")[1]
                orders = self.per_user[f"{ORDERS}@{k}"]
                revenue = self.per_user[f"revenue_per_user@{k}"]
                if rows is not None:
                    orders, revenue = orders[rows], revenue[rows]
                total = float(orders.sum())
                out[name] = float(revenue.sum()) / total if total > 0 else float("nan")
                continue
            ok = ~np.isnan(v)
            out[name] = float(v[ok].mean()) if ok.any() else float("nan")
        if rows is None:
            out.update(self.catalog)
        return out


def prefix_consistent(rec: HybridRecommender) -> bool:
    """True when a top-k list is the prefix of the top-K list for k < K, so one request per user
    at max(ks) serves every k. MMR and the category cap look at k, so then each k is asked."""
    rules = rec.config.rules
    return rules.mmr_lambda is None and rules.max_per_category is None


def recommend_at(rec: HybridRecommender, window: EvalWindow, ks: tuple[int, ...], *,
                 surface: str = "for_you", progress: bool = False,
                 desc: str = "") -> dict[int, np.ndarray]:
    """Lists at each k in ``ks`` through :func:`recommend_lists` (one request per user and k, or
    one per user when :func:`prefix_consistent`)."""
    if prefix_consistent(rec):
        full = recommend_lists(rec, window, max(ks), surface=surface, progress=progress,
                               desc=desc)
        return {k: full[:, :k] for k in ks}
    return {k: recommend_lists(rec, window, k, surface=surface, progress=progress,
                               desc=f"{desc}@{k}") for k in ks}


def subset_window(window: EvalWindow, rows: np.ndarray) -> EvalWindow:
    """The window restricted to ``rows`` (sorted row indices), events re-indexed to match."""
    rows = np.asarray(rows, dtype=np.int64)
    new_row = np.full(len(window.users), -1, dtype=np.int64)
    new_row[rows] = np.arange(len(rows))
    ev = window.events
    keep = new_row[ev["user_id"].to_numpy(np.int64)] >= 0
    events = ev.loc[keep].copy()
    events["user_id"] = new_row[events["user_id"].to_numpy(np.int64)]
    return EvalWindow(window.users[rows], window.start, [window.relevant[i] for i in rows],
                      [window.relevant_new[i] for i in rows], events.reset_index(drop=True),
                      window.returning[rows], {n: v[rows] for n, v in window.extra.items()},
                      window.priced)


def subset_results(result: ModelResult, rows: np.ndarray, n_items: int) -> ModelResult:
    """``result`` for the window rows ``rows`` only (catalogue metrics recomputed on them)."""
    lists = {k: v[rows] for k, v in result.lists.items()}
    catalog = {}
    for k, recs in lists.items():
        catalog[f"coverage@{k}"] = beyond.catalog_coverage(recs, n_items, k)
        catalog[f"gini@{k}"] = beyond.gini_exposure(recs, n_items, k)
    return ModelResult(result.name, lists, {m: v[rows] for m, v in result.per_user.items()},
                       catalog, result.seconds, list(result.warnings))


def history_popularity(rec: HybridRecommender, before: pd.Timestamp) -> np.ndarray:
    """p(i) as the window starts: share of users with history before ``before`` who interacted
    with item i (the user-based :func:`evaluation.beyond.popularity_share`, computed on the
    bundle's stored history, which is what the recommender itself knew)."""
    hist = rec.history
    n_items = len(rec.items)
    users = np.repeat(np.arange(len(hist.offsets) - 1, dtype=np.int64), np.diff(hist.offsets))
    keep = hist.times < int(pd.Timestamp(before).timestamp())
    keys = np.unique(users[keep] * n_items + hist.items[keep].astype(np.int64))
    n_users = len(np.unique(keys // n_items))
    return np.bincount(keys % n_items, minlength=n_items) / max(n_users, 1)


def per_user_metrics(recs: np.ndarray, window: EvalWindow, k: int,
                     surface: str = "for_you") -> dict[str, np.ndarray]:
    """Ranking (against the surface's target, and ``new_`` on items new to the user) and
    business metrics at ``k``, one value per user (no revenue metrics when the window has no
    prices)."""
    out = dict(ranking_metrics(recs, window.target(surface), k))
    out.update({f"new_{n}": v for n, v in ranking_metrics(recs, window.relevant_new, k).items()})
    biz = business_metrics(recs, window.events, k, revenue=window.priced)
    out.update({n: v for n, v in biz.items() if n != ORDERS})
    if ORDERS in biz:
        out[f"{ORDERS}@{k}"] = biz[ORDERS]
    return out


def beyond_metrics(recs: np.ndarray, window: EvalWindow, k: int, *, rec: HybridRecommender,
                   share: np.ndarray, popular: np.ndarray | None, surface: str = "for_you"
                   ) -> tuple[dict[str, np.ndarray], dict[str, float], list[str]]:
    """Per-user diversity, novelty, serendipity (vs the ``popular`` lists; NaN without them)
    and popularity, the catalogue coverage and Gini at ``k``, and any warnings."""
    warnings: list[str] = []
    n_items = len(rec.items)
    per_user = {
        f"ild_category@{k}": beyond.ild_category(recs, rec.catalog.category_codes, k),
        f"novelty@{k}": beyond.novelty(recs, share, k),
        f"serendipity@{k}": (beyond.serendipity(recs, window.target(surface), popular, k)
                             if popular is not None else np.full(len(recs), np.nan)),
        f"mean_popularity@{k}": beyond.mean_popularity(recs, share, k),
    }
    try:
        per_user[f"ild_embedding@{k}"] = beyond.ild_embedding(recs, rec.item_embeddings(), k)
    except DataError as exc:   # an item without a content vector: say so, keep the report
        per_user[f"ild_embedding@{k}"] = np.full(len(recs), np.nan)
        warnings.append(f"ild_embedding@{k} not computed: {exc}")
    catalog = {f"coverage@{k}": beyond.catalog_coverage(recs, n_items, k),
               f"gini@{k}": beyond.gini_exposure(recs, n_items, k)}
    return per_user, catalog, warnings


def evaluate_pipelines(rec: HybridRecommender, window: EvalWindow, pipelines: tuple[str, ...],
                       ks: tuple[int, ...], *, surface: str = "for_you",
                       share: np.ndarray | None = None, serendipity: bool = True,
                       progress: bool = False) -> dict[str, ModelResult]:
    """Run each pipeline (``rec.variant(name)``) on the same window users, on one surface,
    and score it against that surface's target.

    Serendipity is measured against the popularity pipeline's lists, so with ``serendipity``
    that pipeline is always run (returned only when asked for); without, serendipity is NaN.
    ``share`` is p(i) for novelty and popularity (default: :func:`history_popularity` at the
    window start).

    >>> # results = evaluate_pipelines(rec, window, ("hybrid", "popularity"), (5, 10))
    >>> # results["hybrid"].means()["ndcg@10"]
    """
    if not pipelines:
        raise DataError("evaluate_pipelines: no pipeline to evaluate")
    if not ks or min(ks) < 1:
        raise DataError(f"ks must be positive ints, got {ks}")
    ks = tuple(sorted(set(ks)))
    if share is None:
        share = history_popularity(rec, window.start)
    order = list(dict.fromkeys((["popularity"] if serendipity else []) + list(pipelines)))
    lists: dict[str, dict[int, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name in order:
        started = time.perf_counter()
        lists[name] = recommend_at(rec.variant(name), window, ks, surface=surface,
                                   progress=progress, desc=f"{surface}/{name}")
        seconds[name] = time.perf_counter() - started
    out: dict[str, ModelResult] = {}
    for name in pipelines:
        result = ModelResult(name, lists[name], {}, {}, seconds[name])
        for k in ks:
            recs = lists[name][k]
            result.per_user.update(per_user_metrics(recs, window, k, surface))
            popular = lists["popularity"][k] if "popularity" in lists else None
            extra, catalog, warnings = beyond_metrics(recs, window, k, rec=rec, share=share,
                                                      popular=popular, surface=surface)
            result.per_user.update(extra)
            result.catalog.update(catalog)
            result.warnings += warnings
        out[name] = result
    return out
