"""Deployment gate: does a candidate bundle beat, or at least not hurt, the champion?

Both bundles are scored by :func:`~evaluation.offline.evaluate_pipelines` on the same window and
the same users; :func:`check_gate` then applies the rules of ``configs/gate.toml``
(:class:`GateRules`), each giving a pass or a fail with its reason:

* ``not_worse``: the candidate is not *significantly* worse (seeded paired bootstrap test on the
  per-user values; a worse point estimate that is within noise passes);
* ``max_relative_drop``: the candidate's mean is not lower than the champion's by more than the
  given fraction (0.05 = 5%);
* ``min_value``: the candidate's value is at least the floor (any metric, e.g. ``coverage@10``).

A rule on a revenue metric is skipped, with its reason, when the shop has no prices (revenue is
then not measured, :data:`evaluation.business.NO_PRICES`); a skipped rule does not fail the gate.

Example::

    rules = load_config(GateRules, "configs/gate.toml")
    outcome = check_gate(candidate_result, champion_result, rules)
    outcome.passed, [r.line() for r in outcome.rules]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator

from evaluation.bootstrap import paired_test
from evaluation.business import NO_PRICES, is_revenue
from evaluation.offline import (
    CATALOG,
    PER_USER_BEYOND,
    PER_USER_BUSINESS,
    PER_USER_RANKING,
    ModelResult,
)
from recsys.configfile import StrictModel
from recsys.errors import DataError
from recsys.sources import pipeline_names

PER_USER = (*PER_USER_RANKING, *(f"new_{m}" for m in PER_USER_RANKING), *PER_USER_BUSINESS,
            *PER_USER_BEYOND)


def _metric(name: str, allowed: tuple[str, ...]) -> str:
    base, sep, k = name.partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise ValueError(f"gate rule metric {name!r}: expected NAME@K, e.g. 'ndcg@10'")
    if base not in allowed:
        raise ValueError(f"gate rule metric {name!r}: unknown {base!r} (expected one of "
                          f"{', '.join(allowed)})")
    return name


class GateRules(StrictModel):
    """The gate's rules and how the comparison is made (``configs/gate.toml``)."""

    pipeline: str = "hybrid"                 # which pipeline of each bundle is deployed
    alpha: float = Field(0.05, gt=0, lt=1)   # significance level of the paired tests
    n_resamples: int = Field(2000, ge=100)
    seed: int = 0                            # bootstrap and user sampling
    max_users: int | None = Field(None, ge=2)
    # defaults = configs/gate.toml (a test keeps them equal)
    not_worse: tuple[str, ...] = ("ndcg@10", "recall@10")
    max_relative_drop: dict[str, float] = Field(
        default_factory=lambda: {"revenue_per_rec@10": 0.05, "conversion@10": 0.05})
    min_value: dict[str, float] = Field(default_factory=lambda: {"coverage@10": 0.02})

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, value: str) -> str:
        if value not in pipeline_names():
            raise ValueError(f"gate pipeline {value!r}: expected one of "
                             f"{', '.join(pipeline_names())}")
        return value

    @field_validator("not_worse")
    @classmethod
    def _not_worse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_metric(m, PER_USER) for m in value)

    @field_validator("max_relative_drop")
    @classmethod
    def _drops(cls, value: dict[str, float]) -> dict[str, float]:
        for m, x in value.items():
            _metric(m, (*PER_USER, *CATALOG))
            if not 0 <= x < 1:
                raise ValueError(f"max_relative_drop {m!r} = {x}: expected a fraction in [0, 1)")
        return value

    @field_validator("min_value")
    @classmethod
    def _floors(cls, value: dict[str, float]) -> dict[str, float]:
        for m in value:
            _metric(m, (*PER_USER, *CATALOG))
        return value

    def metrics(self) -> list[str]:
        return list(dict.fromkeys([*self.not_worse, *self.max_relative_drop, *self.min_value]))

    def ks(self) -> tuple[int, ...]:
        """The cut-offs the rules need."""
        return tuple(sorted({int(m.split("@")[1]) for m in self.metrics()})) or (10,)


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict and the numbers behind it."""

    rule: str
    metric: str
    passed: bool
    reason: str
    skipped: bool = False   # not applicable to this data (revenue without prices); passed

    def line(self) -> str:
        word = "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"
        return f"{word}  {self.rule} {self.metric}: {self.reason}"


@dataclass(frozen=True)
class GateOutcome:
    rules: list[RuleResult]
    users: int

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def lines(self) -> list[str]:
        failed = [f"{r.rule} {r.metric}" for r in self.rules if not r.passed]
        skipped = sum(r.skipped for r in self.rules)
        also = f", {skipped} skipped" if skipped else ""
        verdict = (f"gate: PASS ({len(self.rules)} rules{also}, {self.users:,} users)"
                   if not failed
                   else f"gate: FAIL ({len(failed)} of {len(self.rules)} rules: "
                        f"{'; '.join(failed)})")
        return [r.line() for r in self.rules] + [verdict]


def _value(result: ModelResult, metric: str) -> float:
    means = result.means()
    if metric not in means:
        raise DataError(f"metric {metric!r} was not evaluated for {result.name!r}")
    return means[metric]


def _unpriced(metric: str, *results: ModelResult) -> bool:
    """A revenue metric that was not measured (the shop has no prices)."""
    return is_revenue(metric) and any(metric not in r.per_user for r in results)


def _skipped(rule: str, metric: str) -> RuleResult:
    return RuleResult(rule, metric, True, f"skipped, {NO_PRICES}", skipped=True)


def check_gate(candidate: ModelResult, champion: ModelResult, rules: GateRules) -> GateOutcome:
    """Apply ``rules`` to two results on the same users (row u = the same user in both)."""
    n = len(next(iter(candidate.per_user.values()), []))
    if n != len(next(iter(champion.per_user.values()), [])):
        raise DataError("gate: candidate and champion were not evaluated on the same users")
    out: list[RuleResult] = []
    for m in rules.not_worse:
        if _unpriced(m, candidate, champion):
            out.append(_skipped("not_worse", m))
            continue
        a, b = candidate.per_user[m], champion.per_user[m]
        try:
            t = paired_test(a, b, method="bootstrap", n_resamples=rules.n_resamples,
                            alpha=rules.alpha, seed=rules.seed)
        except DataError as exc:
            out.append(RuleResult("not_worse", m, False, f"cannot test: {exc}"))
            continue
        worse = t.significant and t.diff < 0
        verdict = ("significantly worse" if worse else
                   "not significantly different" if not t.significant else "significantly better")
        out.append(RuleResult(
            "not_worse", m, not worse,
            f"{verdict}: candidate {np.nanmean(a):.4f} vs champion {np.nanmean(b):.4f}, "
            f"diff {t.diff:+.4f} [{t.low:+.4f}, {t.high:+.4f}], p={t.p_value:.3g} "
            f"(paired bootstrap, n={t.n:,}, alpha={rules.alpha})"))
    for m, limit in rules.max_relative_drop.items():
        if _unpriced(m, candidate, champion):
            out.append(_skipped("max_relative_drop", m))
            continue
        c, h = _value(candidate, m), _value(champion, m)
        if np.isnan(c) or np.isnan(h):
            out.append(RuleResult("max_relative_drop", m, False,
                                  f"undefined (candidate {c}, champion {h})"))
            continue
        change = (c - h) / abs(h) if h != 0 else (0.0 if c >= 0 else -np.inf)
        out.append(RuleResult(
            "max_relative_drop", m, bool(change >= -limit),
            f"candidate {c:.4f} vs champion {h:.4f} ({change:+.1%}; allowed drop "
            f"{limit:.0%})"))
    for m, floor in rules.min_value.items():
        if _unpriced(m, candidate, champion):
            out.append(_skipped("min_value", m))
            continue
        c = _value(candidate, m)
        out.append(RuleResult("min_value", m, bool(c >= floor),
                              f"candidate {c:.4f} (floor {floor:g})"))
    return GateOutcome(out, n)
