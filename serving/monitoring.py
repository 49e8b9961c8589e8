"""Drift and health monitoring of live traffic against the training snapshot.

Each worker evaluates, every ``monitoring.interval_s`` (and when ``GET /v1/monitoring`` asks):

* **drift**: the population stability index (PSI, :mod:`recsys.profile`) of every ranker
  feature and of the ranking score, over the served rows it sampled
  (:class:`serving.drift.FeatureSample`), against the served bundle's feature profile (the
  top-10 rows of the ranker's training queries). No verdict under ``min_rows`` rows; the
  calendar features (``psi_ignore``: hour, day of week) are shown but raise no alert.
* **health**, from the window of served lists (:mod:`serving.health`): catalog coverage,
  popularity concentration (share of slots to the top 1% of items), fallback rate;
* **events**, from the ingested-events window (:class:`serving.drift.IngestWindow`): the
  unknown-item rate (events naming an item the served bundle was not trained with: new or
  launched products) and the ingest lag (p95 of received - event time). No verdict under
  ``min_events`` events.

Each check has a threshold in ``[monitoring]`` (None: shown, never alerts). A check that
starts firing is logged (warning; its recovery at info), ``recsys_alert{check}`` goes to 1 in
``/metrics``, and when it is one of ``retrain_on`` and ``retrain_trigger`` is set, the trigger
file is written (at most once per ``retrain_cooldown_s``): ``recsys retrain --every`` runs at
once when it sees it. ``docs/operations.md`` says what to do about each alert.

Gauges (labels: ``check`` or ``feature``): ``recsys_monitor_value``,
``recsys_monitor_threshold``, ``recsys_alert`` (1 firing), ``recsys_alerts_firing``,
``recsys_feature_psi`` (``feature="score"`` is the score), ``recsys_monitor_rows``. With
several workers each publishes its own and ``/metrics`` shows the worst (max) of the live ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.profile import SCORE
from recsys.profile import psi as psi_of
from serving.drift import FeatureSample, IngestWindow
from serving.health import ServedWindow
from serving.polling import Poller
from serving.settings import DEFAULT_BUNDLE, MonitoringSettings

if TYPE_CHECKING:
    from serving.state import LoadedBundle, ServingState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One monitored value against its threshold (``bound``: ``max`` = alert above it)."""

    name: str
    value: float | None
    threshold: float | None
    bound: str
    firing: bool
    detail: str


@dataclass
class MonitorReport:
    """What one evaluation found (``to_json`` is the body of ``GET /v1/monitoring`` and of
    ``recsys monitor``'s ``monitor.json``)."""

    at: str
    worker_pid: int
    bundle_version: str | None
    rows: int                                   # sampled served rows behind the PSI
    psi: dict[str, float]                       # feature (and "score") -> PSI
    # per feature: bin edges, training and live shares (the last bin: missing values)
    histograms: dict[str, dict[str, list[float]]]
    health: dict[str, float | int | None]
    events: dict[str, float | int | None]
    checks: list[Check] = field(default_factory=list)
    psi_ignored: list[str] = field(default_factory=list)   # shown, never alerting

    @property
    def firing(self) -> list[str]:
        return [c.name for c in self.checks if c.firing]

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["alert"] = bool(self.firing)
        body["firing"] = self.firing
        return body


def _check(name: str, value: float | None, threshold: float | None, bound: str,
           detail: str) -> Check:
    firing = (value is not None and threshold is not None
              and (value > threshold if bound == "max" else value < threshold))
    return Check(name, value, threshold, bound, bool(firing), detail)


def evaluate(settings: MonitoringSettings, bundle: LoadedBundle | None, sample: FeatureSample,
             ingest: IngestWindow, served: ServedWindow) -> MonitorReport:
    """One evaluation of every check (pure: no logging, no trigger)."""
    version, rows, scores = sample.snapshot()
    rec = bundle.recommender if bundle is not None else None
    profile = rec.profile if rec is not None else None
    psi: dict[str, float] = {}
    histograms: dict[str, dict[str, list[float]]] = {}
    if (bundle is not None and rec is not None and profile is not None
            and version == bundle.version and len(scores) >= settings.min_rows):
        for name, shares in profile.live_shares(rows, rec.features.names, scores).items():
            psi[name] = psi_of(profile.shares[name], shares)
            histograms[name] = {"edges": profile.edges[name].tolist(),
                                "train": profile.shares[name].tolist(),
                                "live": shares.tolist()}
    features = {k: v for k, v in psi.items() if k != SCORE and k not in settings.psi_ignore}
    worst = max(features, key=lambda k: features[k]) if features else None
    n_items = len(rec.items) if rec is not None else 0
    summary = served.summary(n_items)
    lags, known = ingest.snapshot()
    enough = len(lags) >= settings.min_events
    unknown_rate = float(1.0 - known.mean()) if enough else None
    lag_p95 = float(np.quantile(lags, 0.95)) if enough else None
    health = {"lists": summary.lists, "catalog_items": n_items, "coverage": summary.coverage,
              "top_share": summary.top_share, "top_n": summary.top_n,
              "fallback_rate": summary.fallback_rate}
    events = {"events": len(lags), "unknown_item_rate": unknown_rate,
              "ingest_lag_p50_s": float(np.quantile(lags, 0.5)) if enough else None,
              "ingest_lag_p95_s": lag_p95}
    s = settings
    lists = summary.lists
    checks = [
        _check("feature_psi", features[worst] if worst else None, s.feature_psi, "max",
               f"largest over {len(features)} features: {worst} ({len(scores)} rows)" if worst
               else f"{len(scores)} rows sampled (verdict from {s.min_rows})"),
        _check("score_psi", psi.get(SCORE), s.score_psi, "max",
               f"ranking score over {len(scores)} rows"),
        _check("coverage", summary.coverage if lists else None, s.min_coverage, "min",
               f"{summary.distinct_items} of {n_items} items in {lists} lists"),
        _check("top_share", summary.top_share if lists else None, s.max_top_share, "max",
               f"share of slots to the {summary.top_n} most served items"),
        _check("fallback_rate", summary.fallback_rate if lists else None,
               s.max_fallback_rate, "max", f"over {lists} lists"),
        _check("unknown_item_rate", unknown_rate, s.max_unknown_item_rate, "max",
               f"over {len(lags)} events (verdict from {s.min_events})"),
        _check("ingest_lag_s", lag_p95, s.max_ingest_lag_s, "max",
               f"p95 of received - event time over {len(lags)} events"),
    ]
    return MonitorReport(datetime.now(UTC).isoformat(timespec="seconds"), os.getpid(),
                         bundle.version if bundle is not None else None, len(scores), psi,
                         histograms, health, events, checks,
                         [k for k in psi if k in settings.psi_ignore])


class Monitor:
    """One per worker: the samples, the last report, the alert transitions and the trigger."""

    def __init__(self, settings: MonitoringSettings, served: ServedWindow) -> None:
        self.settings = settings
        self.served = served
        self.sample = FeatureSample(settings.sample_rows)
        self.ingest = IngestWindow(settings.events_window)
        self.last: MonitorReport | None = None
        self._trained: tuple[str, frozenset[str]] | None = None   # version, its items
        self._firing: set[str] = set()
        self._last_trigger = -float("inf")
        self._lock = threading.Lock()
        self._poller: Poller | None = None

    # ------------------------------------------------------------------ request path
    def set_bundle(self, bundle: LoadedBundle) -> None:
        """A new default bundle: remember the items it was trained with (a catalog change
        that keeps the version keeps the set: new items stay unknown until a retrain)."""
        if self._trained is None or self._trained[0] != bundle.version:
            items = bundle.recommender.items.external_ids
            self._trained = (bundle.version, frozenset(str(i) for i in items))
            self.ingest.clear()

    def record_served(self, version: str, features: np.ndarray, scores: np.ndarray) -> None:
        self.sample.record(version, features, scores)

    def record_events(self, events: list[dict[str, Any]], received: datetime) -> None:
        trained = self._trained[1] if self._trained is not None else frozenset()
        out = []
        for e in events:
            if e.get("event_type") == "impression":   # a served item: known by definition
                continue
            ts = e["timestamp"]
            ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
            out.append(((received - ts).total_seconds(), str(e["item_id"]) in trained))
        self.ingest.record(out)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, state: ServingState) -> MonitorReport:
        """Evaluate, log alert transitions, write the retrain trigger; keep the report."""
        with self._lock:
            bundle = state.bundles.get(DEFAULT_BUNDLE)
            report = evaluate(self.settings, bundle, self.sample, self.ingest, self.served)
            firing = set(report.firing)
            for c in report.checks:
                if c.name in firing and c.name not in self._firing:
                    log.warning("monitoring alert %s: %.4g (threshold %s %g; %s)", c.name,
                                c.value, c.bound, c.threshold, c.detail)
                elif c.name in self._firing and c.name not in firing:
                    log.info("monitoring alert %s resolved: %s", c.name, c.value)
            self._firing = firing
            self.last = report
            self._maybe_trigger(report)
            return report

    def _maybe_trigger(self, report: MonitorReport) -> None:
        s = self.settings
        causes = [c for c in report.checks if c.firing and c.name in s.retrain_on]
        if s.retrain_trigger is None or not causes:
            return
        if time.monotonic() - self._last_trigger < s.retrain_cooldown_s:
            return
        path = Path(s.retrain_trigger)
        text = "; ".join(f"{c.name} {c.value:.4g} > {c.threshold:g}" for c in causes
                         if c.value is not None and c.threshold is not None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{report.worker_pid}")
            tmp.write_text(f"{report.at} bundle {report.bundle_version}: {text}\n")
            tmp.replace(path)
        except OSError as exc:
            log.error("monitoring: cannot write the retrain trigger %s: %s", path, exc)
            return
        self._last_trigger = time.monotonic()
        log.warning("monitoring: retrain triggered (%s) -> %s", text, path)

    def start(self, state: ServingState) -> None:
        self._poller = Poller(lambda: self.evaluate(state), "monitoring",
                              "monitoring evaluation failed")
        self._poller.start(self.settings.interval_s)

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.stop(5.0)


def report_samples(report: MonitorReport | None) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """The gauges of a report: family name -> [(label values, value)]."""
    out: dict[str, list[tuple[tuple[str, ...], float]]] = {
        name: [] for name in GAUGES}
    if report is None:
        return out
    for c in report.checks:
        if c.value is not None:
            out["recsys_monitor_value"].append(((c.name,), float(c.value)))
        if c.threshold is not None:
            out["recsys_monitor_threshold"].append(((c.name,), float(c.threshold)))
        out["recsys_alert"].append(((c.name,), float(c.firing)))
    out["recsys_alerts_firing"].append(((), float(len(report.firing))))
    out["recsys_monitor_rows"].append(((), float(report.rows)))
    for name, value in report.psi.items():
        out["recsys_feature_psi"].append(((name,), float(value)))
    return out


# family -> (help, labels)
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "recsys_monitor_value": ("monitored value per check (docs/operations.md)", ("check",)),
    "recsys_monitor_threshold": ("alert threshold per check", ("check",)),
    "recsys_alert": ("1 = the check's alert is firing (in any worker)", ("check",)),
    "recsys_alerts_firing": ("checks whose alert is firing", ()),
    "recsys_monitor_rows": ("served feature rows behind the PSI", ()),
    "recsys_feature_psi": ("PSI of a ranker feature (feature=\"score\": the ranking score) "
                           "against the bundle's training profile", ("feature",)),
}
