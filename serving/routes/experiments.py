"""``GET /v1/experiments``, ``GET /v1/experiments/{name}`` (definitions and live counts) and
``GET /v1/experiments/{name}/results`` (the statistical readout)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from serving.auth import ReadRole
from serving.deps import StateDep
from serving.experiments import Experiment
from serving.readout_schema import ExperimentReadout
from serving.schemas import (
    ExperimentDetail,
    ExperimentList,
    ExperimentOut,
    GuardrailCheckOut,
    VariantLiveOut,
    VariantOut,
)
from serving.state import ServingState

ExperimentName = Annotated[str, Path(min_length=1, max_length=256)]

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


def definition(exp: Experiment, role: str) -> ExperimentOut:
    """The definition; the salt (which decides every unit's variant) only for the admin."""
    return ExperimentOut(name=exp.name, salt=exp.salt if role == "admin" else None,
                         traffic=exp.traffic, unit=exp.unit,
                         active=exp.active,
                         variants=[VariantOut(name=v.name, weight=v.weight, bundle=v.bundle,
                                              pipeline=v.pipeline) for v in exp.variants])


@router.get("", response_model=ExperimentList, operation_id="listExperiments")
async def list_experiments(state: StateDep, role: ReadRole) -> ExperimentList:
    """Every configured experiment (active or not), in config order; needs the read key (the
    salts only with the admin key)."""
    return ExperimentList(experiments=[definition(e, role)
                                       for e in state.experiments.experiments])


def find(state: ServingState, name: str) -> Experiment:
    """The configured experiment called ``name``; 404 when there is none."""
    try:
        return state.experiments.get(name)
    except KeyError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.args[0]) from None


def live_detail(state: ServingState, exp: Experiment, role: str) -> ExperimentDetail:
    """The definition with, per variant, the stored counts (every worker) and this worker's
    live guardrails. Queued exposures should be flushed first (the callers do)."""
    stored = state.store.experiment_counts(exp.name)
    counts = {}
    for v in exp.variants:
        c = stored.get(v.name)
        live = state.guardrails.status(f"{exp.name}/{v.name}")
        counts[v.name] = VariantLiveOut(
            units=c.units if c else 0, exposures=c.exposures if c else 0,
            events=dict(c.events) if c else {}, window_requests=live.requests,
            window_errors=live.errors,
            guardrails=[GuardrailCheckOut(name=ch.name, value=ch.value, threshold=ch.threshold,
                                          passed=ch.passed) for ch in live.checks])
    return ExperimentDetail(**definition(exp, role).model_dump(), counts=counts)


def readout(state: ServingState, exp: Experiment) -> ExperimentReadout:
    """The statistical readout of ``exp`` from the store (``recsys experiment report``'s code),
    with this worker's live guardrails as the observations."""
    from evaluation.experiment_readout import experiment_results
    from evaluation.experiment_stats import GuardrailThresholds

    state.exposures.flush(timeout=2.0)
    observed = {}
    for v in exp.variants:
        checks = state.guardrails.status(f"{exp.name}/{v.name}").checks
        if checks:
            observed[v.name] = {ch.name: ch.value for ch in checks}
    g = state.settings.guardrails
    return ExperimentReadout.model_validate(experiment_results(
        state.store, exp, guardrails=observed or None,
        thresholds=GuardrailThresholds(g.latency_p99_ms, g.fallback_rate)))


@router.get("/{name}", response_model=ExperimentDetail, operation_id="getExperiment",
            responses={404: {"description": "unknown experiment"}})
def experiment(name: ExperimentName, state: StateDep, role: ReadRole) -> ExperimentDetail:
    """The definition, and per variant: distinct units, exposures and attributed events from
    the store (all workers), and this process's live guardrails (p99 latency, fallback rate).

    Exposures still queued in this process are written first, so counts include requests
    answered just before.
    """
    exp = find(state, name)
    state.exposures.flush(timeout=2.0)
    return live_detail(state, exp, role)


@router.get("/{name}/results", response_model=ExperimentReadout,
            operation_id="getExperimentResults",
            responses={404: {"description": "unknown experiment"}})
def experiment_results(name: ExperimentName, state: StateDep, role: ReadRole) -> ExperimentReadout:
    """The statistical readout from the stored exposures and events (read key): per variant units,
    impressions, clicks, CTR, add-to-cart and conversion rates, revenue per unit, AOV; lift vs
    control with 95% intervals and p-values, SRM check, always-valid (mSPRT) p-values per day,
    CUPED-adjusted revenue, guardrails (this process's live p99 latency and fallback rate).

    Reads every event of the experiment: meant for dashboards polling every few minutes, not
    per request.
    """
    return readout(state, find(state, name))
