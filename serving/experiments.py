"""A/B experiment configuration and assignment of a request to a variant.

An experiment splits units (a user id; a session id when the request has no user id) between
variants by weight. Each variant serves either another trained bundle, another named pipeline
setting, or both. Everything is validated when the file is loaded; bad weights are an error,
never renormalised.

Example file (loaded with :func:`load_experiments`; no file means no experiments)::

    # Every request for a unit in `traffic` gets exactly one variant of each active experiment.
    [[experiments]]
    name = "ranker-vs-popularity"
    salt = "2024-06-a"      # change to re-randomise everyone
    traffic = 0.5           # share of units in the experiment, (0, 1]
    active = true
    unit = "user_id"        # user id, falling back to the session id for anonymous requests

    [[experiments.variants]]
    name = "control"
    weight = 0.5
    pipeline = "popularity"

    [[experiments.variants]]
    name = "treatment"
    weight = 0.5
    bundle = "hybrid-2024-06-01"   # must be a bundle the server knows
    pipeline = "hybrid"

Usage::

    config = load_experiments("configs/serving.toml", known_bundles={"hybrid-2024-06-01"})
    for exp in config.active_experiments():
        a = assign(exp, user_id="u42", session_id=None)   # Assignment or None
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from recsys.configfile import StrictModel, load_config
from recsys.errors import ConfigError
from recsys.sources import pipeline_names
from serving.bucketing import WEIGHT_TOLERANCE, bucket, choose_variant, in_traffic

UnitType = Literal["user_id", "session_id"]


class Variant(StrictModel):
    """One arm: a bundle name, a named pipeline setting, or both (at least one)."""

    name: str = Field(min_length=1)
    weight: float = Field(ge=0.0, le=1.0)
    bundle: str | None = Field(default=None, min_length=1)
    pipeline: str | None = None      # "hybrid" or a candidate source's baseline pipeline

    @model_validator(mode="after")
    def _serves_something(self) -> Variant:
        pipelines = pipeline_names()
        if self.bundle is None and self.pipeline is None:
            raise ValueError(f"variant '{self.name}' needs a bundle, a pipeline "
                             f"(one of {', '.join(pipelines)}), or both")
        if self.pipeline is not None and self.pipeline not in pipelines:
            raise ValueError(f"variant '{self.name}': unknown pipeline {self.pipeline!r} "
                             f"(expected one of {', '.join(pipelines)})")
        return self


class Experiment(StrictModel):
    """One experiment: who is in it (``traffic``), how they split (``variants``)."""

    name: str = Field(min_length=1)
    salt: str = Field(min_length=1)
    traffic: float = Field(default=1.0, gt=0.0, le=1.0)
    unit: Literal["user_id"] = "user_id"  # falls back to the session id; see assign()
    active: bool = True
    variants: list[Variant] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _check_variants(cls, variants: list[Variant], info: ValidationInfo) -> list[Variant]:
        name = info.data.get("name", "?")
        total = math.fsum(v.weight for v in variants)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            weights = ", ".join(f"{v.name}={v.weight:g}" for v in variants)
            raise ValueError(f"experiment '{name}': variant weights sum to {total!r}, expected 1 "
                             f"(within {WEIGHT_TOLERANCE:g}; weights are never renormalised): "
                             f"{weights}")
        seen: set[str] = set()
        for v in variants:
            if v.name in seen:
                raise ValueError(f"experiment '{name}': duplicate variant name '{v.name}'")
            seen.add(v.name)
        return variants

    @property
    def weights(self) -> list[float]:
        return [v.weight for v in self.variants]

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; KeyError names the known ones."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"experiment '{self.name}' has no variant '{name}' "
                       f"(variants: {', '.join(v.name for v in self.variants)})")


class ExperimentsConfig(StrictModel):
    """All experiments of a server; names are unique."""

    experiments: list[Experiment] = Field(default_factory=list)

    @field_validator("experiments")
    @classmethod
    def _unique_names(cls, experiments: list[Experiment]) -> list[Experiment]:
        seen: set[str] = set()
        for e in experiments:
            if e.name in seen:
                raise ValueError(f"duplicate experiment name '{e.name}'")
            seen.add(e.name)
        return experiments

    def active_experiments(self) -> list[Experiment]:
        return [e for e in self.experiments if e.active]

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``; KeyError names the known ones."""
        for e in self.experiments:
            if e.name == name:
                return e
        raise KeyError(f"no experiment '{name}' "
                       f"(experiments: {', '.join(e.name for e in self.experiments) or 'none'})")

    def validate_against(self, known_bundles: set[str]) -> ExperimentsConfig:
        """Check every variant's bundle is one the server can load; returns ``self``.

        Separate from parsing because the bundle list is only known at app start-up.
        """
        bad = [f"experiment '{e.name}' variant '{v.name}': unknown bundle '{v.bundle}'"
               for e in self.experiments for v in e.variants
               if v.bundle is not None and v.bundle not in known_bundles]
        if bad:
            known = ", ".join(sorted(known_bundles)) or "none"
            raise ConfigError("; ".join(bad) + f" (known bundles: {known})")
        return self


@dataclass(frozen=True)
class Assignment:
    """The variant a request gets in one experiment, and why (unit and bucket) for logging."""

    experiment: str
    variant: str
    bucket: int
    unit: str
    unit_type: UnitType


def assign(experiment: Experiment, user_id: str | None,
           session_id: str | None) -> Assignment | None:
    """Assign a request to a variant of ``experiment``.

    The unit is the user id, else the session id (an anonymous visitor keeps one variant for
    the session; after logging in they are bucketed by user id and may switch once). Returns
    ``None`` when the experiment is inactive, the request has neither id, or the unit is outside
    the experiment's traffic share.
    """
    if not experiment.active:
        return None
    unit_type: UnitType
    if user_id:
        unit, unit_type = user_id, "user_id"
    elif session_id:
        unit, unit_type = session_id, "session_id"
    else:
        return None
    if not in_traffic(experiment.salt, experiment.name, unit, experiment.traffic):
        return None
    b = bucket(experiment.salt, experiment.name, unit)
    variant = experiment.variants[choose_variant(b, experiment.weights)]
    return Assignment(experiment.name, variant.name, b, unit, unit_type)


def load_experiments(path: str | Path | None,
                     known_bundles: set[str] | None = None) -> ExperimentsConfig:
    """Load and validate an experiments TOML file (``None``: no experiments).

    With ``known_bundles``, also checks every variant's bundle against it. Raises ConfigError.
    """
    config = load_config(ExperimentsConfig, path)
    if known_bundles is not None:
        try:
            config.validate_against(known_bundles)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return config
