"""Serving settings: which bundles to load, where events go, experiments, admin key, limits.

One TOML file (``configs/serving.toml``), loaded into :class:`ServingSettings` by
:func:`load_settings` inside the app factory (never at import time); tests construct the model
directly. Unknown keys are an error, as in every config of the project.

>>> s = ServingSettings(bundles={"default": "runs/demo/bundle"})
>>> s.limits.max_k, s.event_store
(100, PosixPath('var/events.db'))

Relative paths are taken from the working directory of the server process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from recsys.configfile import StrictModel, load_config
from recsys.errors import ConfigError
from serving.experiments import Experiment, ExperimentsConfig, load_experiments

DEFAULT_BUNDLE = "default"
CONFIG_ENV = "RECSYS_SERVING_CONFIG"  # app_from_env: path of the settings TOML
BUNDLE_ENV = "RECSYS_SERVING_BUNDLE"  # app_from_env: overrides bundles.default


class Limits(StrictModel):
    """Request limits; anything over them is a 422 (413 for the body size) naming the field."""

    max_k: int = Field(100, ge=1)
    max_cart: int = Field(50, ge=0)
    max_recent_views: int = Field(50, ge=0)
    max_filter_values: int = Field(500, ge=0)     # categories / exclude_items per request
    max_batch: int = Field(1000, ge=1)            # events per POST /v1/events
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # events stamped further in the future than this are rejected (client clock gone wrong)
    max_clock_skew_s: float = Field(3600.0, ge=0)


class Guardrails(StrictModel):
    """Upper limits every experiment variant must stay under, watched live over the last
    ``window`` requests of each variant. The two thresholds are the ones
    ``evaluation.experiment_stats.GuardrailThresholds`` checks in the offline readout."""

    latency_p99_ms: float = Field(40.0, gt=0)
    # share of responses where the user was unknown (popularity/context fallback); set it from
    # the share of anonymous traffic of the shop
    fallback_rate: float = Field(0.5, ge=0, le=1)
    window: int = Field(1000, ge=10)
    min_requests: int = Field(100, ge=1)  # no verdict on fewer requests than this


class AdminSettings(StrictModel):
    """The admin API key: read from the environment variable ``api_key_env`` at app creation,
    or given as ``api_key`` (tests). Neither set: the admin endpoints answer 503."""

    api_key_env: str = "RECSYS_ADMIN_KEY"
    api_key: SecretStr | None = None

    def resolve_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        return os.environ.get(self.api_key_env) or None


class ExposureLog(StrictModel):
    """The background writer of exposures (what each request served, for experiments)."""

    # synchronous: write each exposure before answering (+3-15 ms per request on our disks);
    # background: queue it and write batches in one transaction (best effort on a crash)
    mode: Literal["background", "synchronous"] = "background"
    max_queue: int = Field(20_000, ge=1)        # beyond this, exposures are dropped and counted
    max_batch: int = Field(1000, ge=1)          # exposures per transaction
    flush_interval_ms: float = Field(50.0, gt=0)


class ServingSettings(StrictModel):
    """Everything ``create_app`` needs; see ``configs/serving.toml`` for a commented example."""

    bundles: dict[str, Path]                   # name -> bundle directory; one named "default"
    event_store: Path = Path("var/events.db")  # SQLite file (created if missing)
    experiments: list[Experiment] = Field(default_factory=list)
    experiments_file: Path | None = None       # or: a separate experiments TOML
    admin: AdminSettings = Field(default_factory=AdminSettings)
    limits: Limits = Field(default_factory=Limits)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    exposures: ExposureLog = Field(default_factory=ExposureLog)
    # requests run on each bundle after loading, so the first real request is not the slow one
    warmup_requests: int = Field(5, ge=0)
    # how often each worker applies erasures recorded by other workers (0 = never)
    erasure_poll_s: float = Field(5.0, ge=0)

    @field_validator("bundles")
    @classmethod
    def _has_default(cls, bundles: dict[str, Path]) -> dict[str, Path]:
        if DEFAULT_BUNDLE not in bundles:
            raise ValueError(f"bundles needs one named '{DEFAULT_BUNDLE}' (got: "
                             f"{', '.join(bundles) or 'none'})")
        return bundles

    @model_validator(mode="after")
    def _one_experiment_source(self) -> ServingSettings:
        if self.experiments and self.experiments_file is not None:
            raise ValueError("give experiments inline or experiments_file, not both")
        return self

    def experiments_config(self) -> ExperimentsConfig:
        """The experiments, validated against the configured bundle names."""
        if self.experiments_file is not None:
            return load_experiments(self.experiments_file, known_bundles=set(self.bundles))
        try:
            return ExperimentsConfig(experiments=self.experiments).validate_against(
                set(self.bundles))
        except ValueError as exc:   # duplicate names (pydantic) surface as ValueError
            raise ConfigError(f"experiments: {exc}") from None


def load_settings(path: str | Path | None = None, *, bundle: str | Path | None = None
                  ) -> ServingSettings:
    """Settings from a TOML file; ``bundle`` overrides (or, without a file, sets) the default
    bundle. Raises ConfigError naming the bad key."""
    if path is None:
        if bundle is None:
            raise ConfigError("serving needs a bundle: give --bundle or --config")
        return ServingSettings(bundles={DEFAULT_BUNDLE: Path(bundle)})
    if bundle is None:
        return load_config(ServingSettings, path)
    # validate the file first (unknown keys, missing default) then replace the default path
    settings = load_config(ServingSettings, path)
    return settings.model_copy(update={"bundles": {**settings.bundles,
                                                   DEFAULT_BUNDLE: Path(bundle)}})


def settings_from_env() -> ServingSettings:
    """Settings for ``serving.app:app_from_env`` (uvicorn workers): the TOML named by
    ``RECSYS_SERVING_CONFIG`` and/or the bundle in ``RECSYS_SERVING_BUNDLE``."""
    path = os.environ.get(CONFIG_ENV) or None
    bundle = os.environ.get(BUNDLE_ENV) or None
    if path is None and bundle is None:
        raise ConfigError(f"set {CONFIG_ENV} (settings TOML) and/or {BUNDLE_ENV} (bundle dir)")
    return load_settings(path, bundle=bundle)
