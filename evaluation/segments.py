"""Who the recommender works for: the offline metrics per user segment and per item kind.

An average over all users hides the groups it fails: new shoppers, light users, one device,
one part of the catalogue. Each :class:`Segmentation` gives every window user exactly one label
(a partition, so segment sizes add up to the window's users); :func:`segment_table` then takes
the per-user metric arrays of :class:`~evaluation.offline.ModelResult` and averages them within
each segment, with a paired t-test of each model against the reference model per segment, and
Benjamini-Hochberg adjusted p-values across the table's tests (a table holds dozens).

Segmentations (all point-in-time: they only use what was known at the window start, or the
window's own events, never the evaluation lists):

* ``repeat habit``: thirds of the shopper's repeat share before the window (explorers, mixed,
  repeaters);
* ``activity``: terciles of the number of history events before the window;
* ``device``: the user's most frequent device in the window (when the data has devices);
* ``category``: the user's main category in the window (most events), top 5, rest "other".

Items: :func:`cold_warm_items` splits each user's relevant items by whether the item had
training events (``HybridRecommender.cold_items``) and reports recall and hit rate on each part.

Example::

    segs = user_segmentations(rec, window, window_events)
    rows = segment_table(results, segs[0], ["ndcg@10", "recall@10"], against="popularity")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.bootstrap import paired_test
from evaluation.multiple_testing import BH, adjust
from evaluation.offline import EvalWindow, ModelResult
from evaluation.ranking import ranking_metrics
from recsys import columns as C
from recsys.errors import DataError
from recsys.history import PURCHASE
from recsys.purchases import Baskets
from recsys.recommender import HybridRecommender

UNKNOWN = "unknown"
OTHER = "other"
MIN_SEGMENT_FOR_TEST = 10   # fewer paired users than this: no test, the table says so


@dataclass(frozen=True)
class Segmentation:
    """One label per window user (row i = ``window.users[i]``), shown in ``order``."""

    name: str
    labels: np.ndarray
    order: tuple[str, ...]
    note: str = ""

    def rows(self, label: str) -> np.ndarray:
        """Window rows of the users in segment ``label``."""
        return np.flatnonzero(self.labels == label)

    def sizes(self) -> dict[str, int]:
        return {label: int((self.labels == label).sum()) for label in self.order}


def _by_user(window: EvalWindow, events: pd.DataFrame, column: str) -> pd.Series:
    """Most frequent non-null ``column`` value per window user (ties: first in sort order)."""
    frame = pd.DataFrame({"u": events[C.USER_ID].astype(str).to_numpy(),
                          "v": events[column].astype(object).to_numpy()})
    frame = frame[frame["u"].isin(set(window.users)) & frame["v"].notna()]
    if frame.empty:
        return pd.Series(dtype=object)
    frame["v"] = frame["v"].astype(str)
    counts = frame.groupby(["u", "v"]).size().reset_index(name="n")
    counts = counts.sort_values(["u", "n", "v"], ascending=[True, False, True])
    return counts.drop_duplicates("u").set_index("u")["v"]


def repeat_habit(rec: HybridRecommender, window: EvalWindow) -> Segmentation:
    """How much of each shopper's buying before the window re-bought earlier items: the
    explorers, the mixed and the repeaters (thirds of the repeat share; ties stay together)."""
    before = int(window.start.timestamp())
    share = np.array([_repeat_share(rec, str(u), before) for u in window.users])
    known = share[~np.isnan(share)]
    if len(known) == 0:
        return Segmentation("repeat habit", np.full(len(share), UNKNOWN, dtype=object),
                            (UNKNOWN,))
    q1, q2 = np.quantile(known, [1 / 3, 2 / 3], method="lower")
    low, mid, high = (f"explorers (repeat share <= {q1:.0%})",
                      f"mixed ({q1:.0%}-{q2:.0%})", f"repeaters (> {q2:.0%})")
    labels = np.where(np.isnan(share), "no purchase before",
                      np.where(share <= q1, low, np.where(share <= q2, mid, high)))
    labels = labels.astype(object)
    order = tuple(t for t in (low, mid, high, "no purchase before") if (labels == t).any())
    return Segmentation("repeat habit", labels, order,
                        "share of the shopper's earlier (item, basket) pairs that re-bought an "
                        "item, in thirds")


def _repeat_share(rec: HybridRecommender, user: str, before: int) -> float:
    events = rec.history.slice(user, before=before)
    bought = events.types == PURCHASE
    return Baskets.of(events.items[bought], events.times[bought]).repeat_share


def history_lengths(rec: HybridRecommender, window: EvalWindow) -> np.ndarray:
    """Number of each user's stored events before the window start."""
    before = int(window.start.timestamp())
    return np.fromiter((len(rec.history.slice(str(u), before=before)) for u in window.users),
                       dtype=np.int64, count=len(window.users))


def activity_tiers(rec: HybridRecommender, window: EvalWindow) -> Segmentation:
    """Terciles of history length: light <= q1/3 < medium <= q2/3 < heavy. Ties stay together,
    so tiers can be unequal (e.g. many users with no history all fall into "light")."""
    n = history_lengths(rec, window)
    if len(n) == 0:
        return Segmentation("activity", np.empty(0, dtype=object), ())
    q1, q2 = (int(x) for x in np.quantile(n, [1 / 3, 2 / 3], method="lower"))
    light, medium = f"light (<= {q1} events)", f"medium ({q1 + 1}-{q2} events)"
    heavy = f"heavy (> {q2} events)"
    labels = np.where(n <= q1, light, np.where(n <= q2, medium, heavy)).astype(object)
    order = tuple(t for t in (light, medium, heavy) if (labels == t).any())
    return Segmentation("activity", labels, order,
                        "terciles of the number of events before the window start")


def device_segments(window: EvalWindow, window_events: pd.DataFrame) -> Segmentation | None:
    """Most frequent device of each user in the window; None when the data has no devices."""
    if C.DEVICE not in window_events.columns or window_events[C.DEVICE].isna().all():
        return None
    main = _by_user(window, window_events, C.DEVICE)
    labels = np.array([main.get(str(u), UNKNOWN) for u in window.users], dtype=object)
    present = set(labels)
    order = tuple(d for d in (*C.DEVICES, UNKNOWN) if d in present)
    return Segmentation("device", labels, order, "the user's most frequent device in the window")


def category_segments(rec: HybridRecommender, window: EvalWindow, window_events: pd.DataFrame,
                      top: int = 5) -> Segmentation:
    """Each user's main category in the window; the ``top`` most common are kept, the rest
    grouped as "other"."""
    frame = window_events[[C.USER_ID, C.ITEM_ID]].copy()
    idx = rec.items.to_internal(frame[C.ITEM_ID].astype(str), missing="minus_one")
    frame = frame[idx >= 0]
    codes = rec.catalog.category_codes[idx[idx >= 0]]
    frame["category"] = np.asarray(rec.catalog.categories, dtype=object)[codes]
    main = _by_user(window, frame, "category")
    labels = np.array([main.get(str(u), UNKNOWN) for u in window.users], dtype=object)
    counts = pd.Series(labels).value_counts()
    counts = counts.drop(UNKNOWN, errors="ignore")
    keep = list(counts.index[:top])
    labels = np.where(np.isin(labels, keep) | (labels == UNKNOWN), labels, OTHER)
    order = tuple(keep) + tuple(x for x in (OTHER, UNKNOWN) if (labels == x).any())
    return Segmentation("category", labels.astype(object), order,
                        f"the user's main category in the window (top {top}, rest = other)")


def user_segmentations(rec: HybridRecommender, window: EvalWindow, window_events: pd.DataFrame
                       ) -> tuple[list[Segmentation], list[str]]:
    """All user segmentations, and notes on the ones that could not be made."""
    segs = [repeat_habit(rec, window), activity_tiers(rec, window)]
    notes = []
    device = device_segments(window, window_events)
    if device is None:
        notes.append("device: the data has no device column values; segment skipped")
    else:
        segs.append(device)
    segs.append(category_segments(rec, window, window_events))
    for seg in segs:
        if len(seg.labels) != len(window.users):
            raise DataError(f"segmentation {seg.name!r} labels {len(seg.labels)} users, "
                            f"the window has {len(window.users)}")
    return segs, notes


def segment_table(results: Mapping[str, ModelResult], seg: Segmentation,
                  metrics: Sequence[str], *, against: str | None = None,
                  alpha: float = 0.05) -> list[dict[str, object]]:
    """Per segment: users, each model's mean of each metric, and each model's paired t-test
    against ``against`` (diff, p-value, significant) on the segment's users; ``p_adjusted`` and
    ``significant_adjusted`` control the false discovery rate over the whole table (BH)."""
    out: list[dict[str, object]] = []
    tested: list[dict[str, object]] = []
    for label in seg.order:
        rows = seg.rows(label)
        entry: dict[str, object] = {"segment": label, "users": int(len(rows))}
        means = {name: {m: r.means(rows).get(m, float("nan")) for m in metrics}
                 for name, r in results.items()}
        entry["metrics"] = means
        tests: dict[str, dict[str, dict[str, object]]] = {}
        if against is not None and against in results:
            base = results[against].per_user
            for name, r in results.items():
                if name == against:
                    continue
                tests[name] = {}
                for m in metrics:
                    if m not in r.per_user:
                        continue
                    a, b = r.per_user[m][rows], base[m][rows]
                    ok = ~(np.isnan(a) | np.isnan(b))
                    if ok.sum() < MIN_SEGMENT_FOR_TEST:
                        tests[name][m] = {"tested": False, "n": int(ok.sum())}
                        continue
                    t = paired_test(a, b, method="t", alpha=alpha)
                    tests[name][m] = {"tested": True, "diff": t.diff, "p_value": t.p_value,
                                      "significant": t.significant, "n": t.n}
                    tested.append(tests[name][m])
        entry["tests"] = tests
        out.append(entry)
    raw = [float(cell["p_value"]) for cell in tested]  # type: ignore[arg-type]
    for cell, p in zip(tested, adjust(raw, BH), strict=True):
        cell["p_adjusted"], cell["significant_adjusted"] = p, p is not None and p < alpha
    return out


def cold_warm_items(rec: HybridRecommender, window: EvalWindow, results: Mapping[str, ModelResult],
                    k: int) -> dict[str, object]:
    """Recall@k and hit rate@k on relevant items without training events (cold) and with
    (warm), per model; users without a relevant item of a kind are left out of that kind."""
    trained = ~rec.cold_items()
    cold = [r[~trained[r]] for r in window.relevant]
    warm = [r[trained[r]] for r in window.relevant]
    out: dict[str, object] = {
        "k": k,
        "users_with_cold": int(sum(len(c) > 0 for c in cold)),
        "users_with_warm": int(sum(len(w) > 0 for w in warm)),
        "cold_relevant_items": int(sum(len(c) for c in cold)),
        "warm_relevant_items": int(sum(len(w) for w in warm)),
        "models": {},
    }
    models: dict[str, dict[str, float]] = {}
    for name, r in results.items():
        if k not in r.lists:
            continue
        values: dict[str, float] = {}
        for kind, rel in (("cold", cold), ("warm", warm)):
            m = ranking_metrics(r.lists[k], rel, k)
            for metric in (f"recall@{k}", f"hit_rate@{k}"):
                v = m[metric]
                ok = ~np.isnan(v)
                values[f"{kind}_{metric}"] = float(v[ok].mean()) if ok.any() else float("nan")
        models[name] = values
    out["models"] = models
    return out
