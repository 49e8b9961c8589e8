"""Serving settings: which bundles to load, where events go, experiments, keys, limits.

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
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from recsys.configfile import StrictModel, load_config
from recsys.errors import ConfigError
from serving.experiments import Experiment, ExperimentsConfig, load_experiments

DEFAULT_BUNDLE = "default"
CONFIG_ENV = "RECSYS_SERVING_CONFIG"  # app_from_env: path of the settings TOML
BUNDLE_ENV = "RECSYS_SERVING_BUNDLE"  # app_from_env: overrides bundles.default
REGISTRY_ENV = "RECSYS_SERVING_REGISTRY"  # app_from_env: overrides registry


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


class HealthSettings(StrictModel):
    """The live window of served lists each worker keeps (:mod:`serving.health`): the
    dashboard's model health view and the ``recsys_served_*`` metrics."""

    window: int = Field(2000, ge=10)                # served lists kept per worker
    rate_window_s: float = Field(60.0, gt=0)        # the request rate is taken over this
    # popularity concentration: the share of slots that go to this top fraction of the catalog
    top_fraction: float = Field(0.01, gt=0, le=1)


MONITOR_CHECKS: tuple[str, ...] = ("feature_psi", "score_psi", "coverage", "top_share",
                                   "fallback_rate", "unknown_item_rate", "ingest_lag_s")


class MonitoringSettings(StrictModel):
    """Drift and health monitoring (:mod:`serving.monitoring`): what each worker samples, how
    often it evaluates, and the thresholds of its alerts (``docs/operations.md`` says what to
    do about each). A threshold of ``None`` turns its alert off (the value is still shown)."""

    enabled: bool = True
    interval_s: float = Field(30.0, gt=0)           # how often each worker evaluates
    # served feature rows (top-k of hybrid for_you answers of the default bundle) kept
    sample_rows: int = Field(20_000, ge=100)
    min_rows: int = Field(500, ge=10)               # no PSI verdict on fewer rows
    events_window: int = Field(5000, ge=10)         # ingested events kept for the event checks
    min_events: int = Field(100, ge=1)              # no event verdict on fewer
    # PSI rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a large shift
    feature_psi: float | None = Field(0.25, gt=0)   # the largest PSI over ranker features
    # features whose PSI is shown but left out of feature_psi: the calendar (a window of live
    # traffic covers a few hours of one day; the training profile covers weeks) and the device
    # (the rankers' horizon queries, most training rows, carry none; a shop that sends one
    # would otherwise alert, and retrain, every cooldown)
    psi_ignore: tuple[str, ...] = ("hour", "dow", "device")
    score_psi: float | None = Field(0.25, gt=0)     # PSI of the ranking score
    min_coverage: float | None = Field(None, ge=0, le=1)   # distinct items served / catalog
    max_top_share: float | None = Field(0.5, ge=0, le=1)   # slots to the top 1% of items
    max_fallback_rate: float | None = Field(None, ge=0, le=1)
    # share of ingested events naming an item the served bundle does not know (new items)
    max_unknown_item_rate: float | None = Field(0.05, ge=0, le=1)
    max_ingest_lag_s: float | None = Field(300.0, gt=0)    # p95 of received - event time
    # when an alert of one of these checks fires, write this file (recsys retrain --every
    # watches it; the registry's retrain.trigger) at most once per retrain_cooldown_s
    retrain_trigger: Path | None = None
    retrain_on: tuple[str, ...] = ("feature_psi", "score_psi", "unknown_item_rate")
    retrain_cooldown_s: float = Field(3600.0, ge=0)

    @field_validator("retrain_on")
    @classmethod
    def _known_checks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in MONITOR_CHECKS]
        if unknown:
            raise ValueError(f"retrain_on: unknown check(s) {', '.join(unknown)} (expected "
                             f"some of {', '.join(MONITOR_CHECKS)})")
        return value


ROLES: tuple[str, ...] = ("write", "read", "dashboard", "admin")


class KeySettings(StrictModel):
    """API keys by role, each read at app creation from the environment variable ``*_env``
    names (or given directly, for tests: ``admin = "..."``; never put real keys in a file).

    * ``write``: ``POST /v1/events`` and the catalog writes (``/v1/catalog/items``): a shop's
      back end. A browser tracker sending events with it makes the key public, and the
      catalog writes with it: keep the write key on servers;
    * ``read``: experiment definitions, counts and results, ``/metrics``;
    * ``dashboard``: the read-only dashboard (``/dashboard`` and ``/v1/dashboard/*``; also
      accepted as the password of HTTP Basic, which is how a browser sends it);
    * ``admin``: reload, erasure, and the experiments' salts. The admin key is accepted
      wherever another key is.

    Each key is optional, and the default is closed: a role without its own key accepts only
    the admin key, and without an admin key either, its endpoints answer 503. Recommendations
    and the health endpoints need no key.
    """

    write_env: str = "RECSYS_WRITE_KEY"
    read_env: str = "RECSYS_READ_KEY"
    dashboard_env: str = "RECSYS_DASHBOARD_KEY"
    admin_env: str = "RECSYS_ADMIN_KEY"
    write: SecretStr | None = None
    read: SecretStr | None = None
    dashboard: SecretStr | None = None
    admin: SecretStr | None = None

    def resolve(self) -> dict[str, str]:
        """role -> key, for the roles that have one (direct value, else the environment)."""
        out = {}
        for role in ROLES:
            given: SecretStr | None = getattr(self, role)
            key = (given.get_secret_value() if given is not None
                   else os.environ.get(getattr(self, f"{role}_env"), ""))
            if key:
                out[role] = key
        return out


class CorsSettings(StrictModel):
    """Browser origins allowed to call the API (e.g. a tracker on the shop's pages); empty =
    no cross-origin access. Exact origins only (``https://shop.example``), no wildcard."""

    allow_origins: list[str] = Field(default_factory=list)

    @field_validator("allow_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an exact origin like "
                                 "'https://shop.example' or 'http://localhost:3000' (scheme, "
                                 "host and optional port; no path, no wildcard)")
        return origins


class PrivacySettings(StrictModel):
    """The server secret of the erasure audit log: the subject of an erasure record is
    HMAC-SHA256(secret, user id), so the log cannot be reversed by hashing candidate ids.
    Read from the environment variable ``audit_secret_env`` (or given, for tests). Without one,
    a random secret is created once and kept in ``<event_store>.secret`` (mode 0600) beside
    the store, so every worker and restart uses the same one; keep that file with the store."""

    audit_secret_env: str = "RECSYS_AUDIT_SECRET"
    audit_secret: SecretStr | None = None

    def resolve_secret(self) -> str | None:
        if self.audit_secret is not None:
            return self.audit_secret.get_secret_value() or None
        return os.environ.get(self.audit_secret_env) or None


class ExposureLog(StrictModel):
    """The background writer of exposures (what each request served, for experiments)."""

    # synchronous: write each exposure before answering (+3-15 ms per request on our disks);
    # background: queue it and write batches in one transaction (best effort on a crash)
    mode: Literal["background", "synchronous"] = "background"
    max_queue: int = Field(20_000, ge=1)        # beyond this, exposures are dropped and counted
    max_batch: int = Field(1000, ge=1)          # exposures per transaction
    flush_interval_ms: float = Field(50.0, gt=0)


class LiveSettings(StrictModel):
    """Live shopper state (:mod:`serving.live`): what each worker keeps of the events stored
    since its bundle was trained, and how often it reads the store for new ones."""

    # how often each worker reads the events (and catalog changes) every worker stored; an
    # accepted event reaches every worker's state within about this. 0 = never (the state is
    # then what start-up rebuilt)
    poll_s: float = Field(0.5, ge=0)
    max_shoppers: int = Field(100_000, ge=1)     # users kept; the least recently used go first
    max_sessions: int = Field(100_000, ge=1)     # sessions kept, likewise
    max_events: int = Field(200, ge=1)           # newest events kept per user or session
    # events of a user within this before the request time are their current session (the
    # cart and recent views of a request that sends none); a session id is a session whatever
    # its age
    session_window_s: float = Field(1800.0, gt=0)
    # after a restart the state is rebuilt from the store: the events received within this,
    # newest first, at most rebuild_max_events
    rebuild_window_s: float = Field(7 * 86400.0, ge=0)
    rebuild_max_events: int = Field(1_000_000, ge=0)
    max_rows_per_poll: int = Field(20_000, ge=100)


def _store_location(value: object) -> object:
    """A ``postgresql://`` URL stays text; anything else is a SQLite file path."""
    if not isinstance(value, str) or "://" not in value:
        return Path(value) if isinstance(value, str) else value
    scheme = value.split("://", 1)[0]
    if scheme.lower() not in ("postgresql", "postgres"):
        raise ValueError(f"unsupported URL scheme '{scheme}' (expected a SQLite file path or a "
                         "postgresql:// URL)")
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        raise ValueError(f"not a valid PostgreSQL URL: {' '.join(str(exc).split())}") from None
    return value


class ServingSettings(StrictModel):
    """Everything ``create_app`` needs; see ``configs/serving.toml`` for a commented example."""

    # name -> bundle directory; one named "default" (unless a registry provides it)
    bundles: dict[str, Path] = Field(default_factory=dict)
    # a model registry (recsys models / recsys retrain): the default bundle is its champion, and
    # every worker follows the champion pointer, checking it every registry_poll_s (0 = only
    # at start-up); a configured default bundle is served only while the registry has none
    registry: Path | None = None
    registry_poll_s: float = Field(2.0, ge=0)
    # a SQLite file (created if missing), or a postgresql:// URL shared by every replica
    event_store: Annotated[Path | str, BeforeValidator(_store_location)] = Path("var/events.db")
    # PostgreSQL only: connections each process may open (API threads, exposure writer, pollers)
    event_store_pool: int = Field(8, ge=1, le=100)
    experiments: list[Experiment] = Field(default_factory=list)
    experiments_file: Path | None = None       # or: a separate experiments TOML
    keys: KeySettings = Field(default_factory=KeySettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    limits: Limits = Field(default_factory=Limits)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    health: HealthSettings = Field(default_factory=HealthSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    exposures: ExposureLog = Field(default_factory=ExposureLog)
    live: LiveSettings = Field(default_factory=LiveSettings)
    # requests run on each bundle after loading, so the first real request is not the slow one
    warmup_requests: int = Field(5, ge=0)
    # how often each worker applies erasures recorded by other workers (0 = never)
    erasure_poll_s: float = Field(5.0, ge=0)
    # how often each worker reads the store's control log: a reload sent to any replica (or
    # worker) is applied by every other one within this (0 = never)
    control_poll_s: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _has_default(self) -> ServingSettings:
        if DEFAULT_BUNDLE not in self.bundles and self.registry is None:
            raise ValueError(f"bundles needs one named '{DEFAULT_BUNDLE}' (got: "
                             f"{', '.join(self.bundles) or 'none'}), or give a registry")
        return self

    @model_validator(mode="after")
    def _one_experiment_source(self) -> ServingSettings:
        if self.experiments and self.experiments_file is not None:
            raise ValueError("give experiments inline or experiments_file, not both")
        return self

    def experiments_config(self) -> ExperimentsConfig:
        """The experiments, validated against the configured bundle names."""
        if self.experiments_file is not None:
            return load_experiments(self.experiments_file,
                                    known_bundles={*self.bundles, DEFAULT_BUNDLE})
        try:
            return ExperimentsConfig(experiments=self.experiments).validate_against(
                {*self.bundles, DEFAULT_BUNDLE})
        except ValueError as exc:   # duplicate names (pydantic) surface as ValueError
            raise ConfigError(f"experiments: {exc}") from None


def load_settings(path: str | Path | None = None, *, bundle: str | Path | None = None,
                  registry: str | Path | None = None) -> ServingSettings:
    """Settings from a TOML file; ``bundle`` overrides (or, without a file, sets) the default
    bundle, ``registry`` the model registry. Raises ConfigError naming the bad key."""
    if path is None:
        if bundle is None and registry is None:
            raise ConfigError("serving needs a bundle: give --bundle, --registry or --config")
        return ServingSettings(
            bundles={} if bundle is None else {DEFAULT_BUNDLE: Path(bundle)},
            registry=None if registry is None else Path(registry))
    settings = load_config(ServingSettings, path)
    # the file was validated first (unknown keys, missing default); then the overrides
    update: dict[str, object] = {}
    if bundle is not None:
        update["bundles"] = {**settings.bundles, DEFAULT_BUNDLE: Path(bundle)}
    if registry is not None:
        update["registry"] = Path(registry)
    return settings.model_copy(update=update) if update else settings


def settings_from_env() -> ServingSettings:
    """Settings for ``serving.app:app_from_env`` (uvicorn workers): the TOML named by
    ``RECSYS_SERVING_CONFIG`` and/or the bundle in ``RECSYS_SERVING_BUNDLE`` and/or the
    registry in ``RECSYS_SERVING_REGISTRY``."""
    path = os.environ.get(CONFIG_ENV) or None
    bundle = os.environ.get(BUNDLE_ENV) or None
    registry = os.environ.get(REGISTRY_ENV) or None
    if path is None and bundle is None and registry is None:
        raise ConfigError(f"set {CONFIG_ENV} (settings TOML) and/or {BUNDLE_ENV} (bundle dir) "
                          f"and/or {REGISTRY_ENV} (model registry)")
    return load_settings(path, bundle=bundle, registry=registry)
