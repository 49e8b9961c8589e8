"""The response schema of ``GET /v1/experiments/{name}/results``: the readout of
:func:`evaluation.experiment_readout.build_readout`, typed for the OpenAPI document.

Every statistic may be ``null`` (not computable yet: too few units, no variance, a NaN from a
ratio over zero), so numbers are ``float | None`` throughout. Extra keys are allowed (the
readout may gain fields before this schema does), so a client generated from it keeps working.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Num = float | None


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class VariantWeight(_Out):
    name: str
    weight: float


class Period(_Out):
    start: str | None
    end: str | None
    days: int


class VariantSummary(_Out):
    units: int
    exposures: Num = None
    impressions: Num = None
    clicks: Num = None
    carts: Num = None
    purchases: Num = None
    revenue: Num = None
    orders: Num = None
    ctr: Num = None
    add_to_cart_rate: Num = None
    conversion_rate: Num = None
    revenue_per_unit: Num = None
    aov: Num = None


class LiftRow(_Out):
    variant: str
    metric: str
    method: str | None = None
    control: Num = None
    treatment: Num = None
    diff: Num = None
    ci_low: Num = None
    ci_high: Num = None
    p_value: Num = Field(None, description="raw (unadjusted) p-value")
    p_adjusted: Num = Field(None, description="adjusted for the readout's multiple tests "
                            "(see multiple_testing)")
    rel_lift: Num = None
    rel_ci_low: Num = None
    rel_ci_high: Num = None
    significant: bool | None = Field(None, description="raw p-value < alpha")
    significant_adjusted: bool | None = Field(None, description="adjusted p-value < alpha")
    variance_reduction: Num = None


class Cuped(_Out):
    covariate: str
    applied: bool
    rows: list[LiftRow]
    units_with_pre_revenue: int | None = None
    note: str | None = None


class Srm(_Out):
    chi2: Num
    p_value: Num
    observed: dict[str, int]
    expected: dict[str, Num]
    mismatch: bool
    threshold: float


class SequentialLook(_Out):
    day: str | None
    units_control: int | None = None
    units_treatment: int | None = None
    control: Num = None
    treatment: Num = None
    diff: Num = None
    ready: bool | None = None
    se: Num = None
    p_value: Num = None
    cs_low: Num = None
    cs_high: Num = None
    reject: bool | None = None
    ci_low: Num = None
    ci_high: Num = None
    rel_lift: Num = None
    fixed_p_value: Num = None


class Sequential(_Out):
    metric: str
    variant: str
    tau2: Num = None
    tau2_source: str | None = None
    empty_sequence_since: str | None = None
    first_reject_day: str | None = None
    p_value: Num = None
    cs_low: Num = None
    cs_high: Num = None
    reject: bool | None = None
    looks: list[SequentialLook] = Field(default_factory=list)
    note: str | None = None


class GuardrailCheck(_Out):
    variant: str
    metric: str
    value: Num
    threshold: Num
    status: str


class Guardrails(_Out):
    status: str
    note: str
    checks: list[GuardrailCheck]


class MultipleTesting(_Out):
    method: str = Field(description="holm: family-wise error rate over the family below")
    family: str
    tests: int
    alpha: float


class DataQuality(_Out):
    rows_read: int = Field(description="stored events the readout read")
    rows_skipped: int = Field(description="events it could not use (left out, not fatal)")
    skipped: dict[str, int] = Field(description="skipped events by reason")


class ExperimentReadout(_Out):
    """The statistical readout of one experiment (see docs/experiments.md)."""

    experiment: str
    control: str
    alpha: float
    variants: list[VariantWeight]
    generated_at: str
    period: Period
    summary: dict[str, VariantSummary]
    intervals: dict[str, dict[str, list[Num]]]
    lift: list[LiftRow]
    multiple_testing: MultipleTesting | None = None
    cuped: Cuped
    srm: Srm | None
    sequential: list[Sequential]
    min_units_per_look: int
    guardrails: Guardrails
    data_quality: DataQuality | None = None
    warnings: list[str]
