"""Readable reasons for each recommended item: from the sources that proposed it (each source
words its own) and from the ranker features that pushed it up most (LightGBM path
contributions), phrased by the feature groups that compute them."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from recsys.context import Query
from recsys.features import FeatureSet
from recsys.pool import CandidatePool
from recsys.sources.base import Source

# a reason must move the score visibly, not by rounding noise
MIN_CONTRIBUTION = 0.01


def source_reasons(pool: CandidatePool, row: int, query: Query,
                   sources: Mapping[str, Source]) -> list[str]:
    """Reasons from the sources that proposed candidate ``row``, strongest (best rank) first."""
    # plain Python on one row of a few sources: numpy calls cost more than the work here
    ranks = pool.ranks[row].tolist()
    vias = pool.via[row].tolist()
    item = int(pool.ids[row])
    out: list[str] = []
    for j in sorted((j for j, r in enumerate(ranks) if r > 0), key=ranks.__getitem__):
        reason = sources[pool.sources[j]].reason(item, vias[j], query)
        if reason:
            out.append(reason)
    return list(dict.fromkeys(out))


def feature_reasons(contrib: np.ndarray, values: np.ndarray, category: str,
                    features: FeatureSet, top: int = 2,
                    order: np.ndarray | None = None) -> list[str]:
    """Phrases for the ``top`` features with the largest positive contribution, skipping
    features that do not apply to this request (NaN, or a 0 flag/count). ``order``: the
    feature indices by contribution, largest first, when the caller sorted many rows at once."""
    out: list[str] = []
    c, v = contrib.tolist(), values.tolist()
    names, phrases, absent = features.names, features.phrases, features.zero_means_absent
    if order is None:
        order = np.argsort(-contrib, kind="stable")
    for j in order[: top * 4].tolist():
        if c[j] <= MIN_CONTRIBUTION:
            break
        if not math.isfinite(v[j]) or (names[j] in absent and v[j] == 0):
            continue
        phrase = phrases.get(names[j])
        if phrase:
            out.append(phrase.format(category=category))
        if len(out) == top:
            break
    return out
