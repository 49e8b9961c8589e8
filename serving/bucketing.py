"""Deterministic experiment bucketing: a few pure hash functions, no I/O, no state.

A unit (user id, or session id for anonymous traffic) is mapped to one of :data:`BUCKETS`
(10,000) buckets by hashing ``f"{salt}:{experiment}:{unit}"``. The hash is GrowthBook's "v2"
double FNV-1a (``fnv1a32(str(fnv1a32(key))) % 10000``, growthbook-python ``core.py`` ``gbhash``):
plain FNV-1a mixes the last characters of a key poorly, so sequential ids such as ``user_41``,
``user_42`` land in correlated buckets; hashing the decimal digits of the first hash again
removes that bias. Python's ``hash()`` is never used: it is salted per process
(``PYTHONHASHSEED``), so two API workers would put the same user in different variants.

Two independent hashes decide two independent things:

* :func:`in_traffic` - is the unit in the experiment at all? (hash of a key with a
  ``traffic:`` prefix)
* :func:`bucket` + :func:`choose_variant` - which variant? (hash of the plain key)

Because they are independent, raising ``traffic`` from 10% to 20% keeps every unit already in
the experiment in it, in the same variant; and the variant split among included units matches
the weights whatever the traffic share.

These functions are pinned by golden cases in ``tests/serving/golden_buckets.json``; any change
to them that moves a golden case reshuffles live users between variants.

Example:
    >>> b = bucket("s1", "ranker-test", "user-42")
    >>> 0 <= b < BUCKETS
    True
    >>> choose_variant(2500, [0.5, 0.5]), choose_variant(7500, [0.5, 0.5])
    (0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BUCKETS = 10_000
WEIGHT_TOLERANCE = 1e-9

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a of the UTF-8 bytes of ``text``.

    Bytes rather than code points (growthbook-python iterates ``ord(ch)``): the two agree on
    ASCII, and the byte form is the standard FNV-1a, so the same value can be computed in SQL,
    JavaScript or Go for analysis. ``fnv1a32("a") == 0xE40C292C``.
    """
    h = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK32
    return h


def _hash_bucket(key: str) -> int:
    """GrowthBook v2 double hash of ``key`` reduced to 0..BUCKETS-1."""
    return fnv1a32(str(fnv1a32(key))) % BUCKETS


def bucket(salt: str, experiment: str, unit: str) -> int:
    """The unit's variant bucket in 0..9999, stable across processes, machines and releases.

    ``salt`` lets an experiment be re-randomised (a new salt reshuffles everyone) without
    renaming it; ``experiment`` keeps two experiments from assigning the same users alike.
    """
    return _hash_bucket(f"{salt}:{experiment}:{unit}")


def traffic_bucket(salt: str, experiment: str, unit: str) -> int:
    """The unit's traffic bucket in 0..9999, independent of :func:`bucket` (different key)."""
    return _hash_bucket(f"traffic:{salt}:{experiment}:{unit}")


def in_traffic(salt: str, experiment: str, unit: str, traffic: float) -> bool:
    """True when the unit falls in the experiment's traffic share ``traffic`` (0..1].

    The first ``round(traffic * 10000)`` traffic buckets are in, so growing ``traffic`` only
    adds units, never removes them.
    """
    if not 0.0 <= traffic <= 1.0:
        raise ValueError(f"traffic must be in [0, 1], got {traffic!r}")
    return traffic_bucket(salt, experiment, unit) < round(traffic * BUCKETS)


def bucket_ranges(weights: Sequence[float]) -> list[tuple[int, int]]:
    """Half-open bucket ranges ``[start, end)`` per variant, from cumulative weights.

    Weights must be >= 0 and sum to 1 within 1e-9; they are never renormalised (a typo in a
    config must fail, not quietly change the split). Boundaries are rounded to whole buckets,
    so a weight is honoured to within 1/10000.
    """
    if not weights:
        raise ValueError("weights must not be empty")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    total = math.fsum(weights)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"weights must sum to 1 (within {WEIGHT_TOLERANCE:g}), "
                         f"got {total!r} from {list(weights)}")
    ranges = []
    start = 0
    for i in range(len(weights)):
        end = BUCKETS if i == len(weights) - 1 else round(math.fsum(weights[: i + 1]) * BUCKETS)
        ranges.append((start, end))
        start = end
    return ranges


def choose_variant(bucket: int, weights: Sequence[float]) -> int:
    """Index of the variant whose cumulative-weight range holds ``bucket`` (0..9999).

    Variant ``i`` owns buckets ``[round(W_{i-1} * 10000), round(W_i * 10000))`` where ``W_i`` is
    the cumulative weight; a zero-weight variant owns no bucket.
    """
    if not 0 <= bucket < BUCKETS:
        raise ValueError(f"bucket must be in 0..{BUCKETS - 1}, got {bucket!r}")
    for i, (start, end) in enumerate(bucket_ranges(weights)):
        if start <= bucket < end:
            return i
    raise AssertionError("unreachable: the ranges cover 0..BUCKETS-1")  # pragma: no cover
