"""The A/B readout of one experiment, assembled from the event store.

The store holds two things: **exposures** (one per recommendation request in an experiment:
request id, variant, unit) and **events** (impressions, clicks, carts, purchases, each with the
``request_id`` of the list that caused it when the client sent one). This module joins them into
the per-unit-and-day table ``evaluation.experiment_stats`` reads, then runs the statistics:
per-variant funnel, lift against control with 95% intervals, SRM, daily always-valid (mSPRT)
p-values, CUPED on revenue per unit, and the guardrails.

Attribution, per unit (the user id, or the session id of an anonymous request: the unit
bucketing randomised):

* an event whose ``request_id`` is one of the experiment's exposures belongs to that
  exposure's unit;
* any other event of the unit (same user id, else same session id) at or after the unit's first
  exposure belongs to it too: the purchase a shopper makes later without a request id still
  counts (intention to treat);
* the unit's events before the experiment's first exposure are its **pre-period**, the CUPED
  covariate (``pre_revenue``), together with ``pre_events`` from outside the store (e.g. the
  shop's own event log) or an explicit ``pre_period`` value per unit.

An exposure's time is the earlier of its ``created_at`` (server clock) and its first linked
event (client clock), so a replayed or simulated client whose clock is in the past still
gets a consistent experiment start. Orders are distinct (unit, session, timestamp) among
purchases: the lines of one checkout share a timestamp.

>>> # readout = experiment_results(store, experiments.get("popularity-vs-hybrid"))
>>> # write_report(readout, "runs/ab")      # report.html + readout.json
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from evaluation.experiment_html import summary_lines, write_report
from evaluation.experiment_stats import (
    COUNT_COLUMNS,
    DAY,
    METRICS,
    SRM_P_THRESHOLD,
    UNIT,
    VARIANT,
    GuardrailThresholds,
    check_guardrails,
    check_srm,
    compare_variants,
    metric_moments,
    unit_table,
    variant_summary,
)
from evaluation.multiple_testing import HOLM, adjust
from evaluation.sequential import MIN_UNITS, horizon_tau2, sequential_test
from recsys import columns as C
from recsys.errors import DataError

__all__ = [
    "ExperimentFrame", "build_readout", "empty_readout", "experiment_frame",
    "experiment_results", "jsonable", "load_events", "load_exposures", "summary_lines",
    "write_report",
]

IMPRESSION = "impression"
READOUT_EVENT_TYPES: tuple[str, ...] = (IMPRESSION, C.CLICK, C.ADD_TO_CART, C.PURCHASE)
PRE_COLUMNS: tuple[str, ...] = ("pre_revenue", "pre_purchases", "pre_events")
CUPED_COVARIATE = "pre_revenue"
GUARDRAIL_METRICS: tuple[str, ...] = ("latency_p99_ms", "fallback_rate")
SEQUENTIAL_METRICS: tuple[str, ...] = ("ctr", "conversion_rate", "revenue_per_unit")
_EVENT_FRAME_COLUMNS = (C.USER_ID, C.SESSION_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP,
                        "request_id", C.PRICE, C.QUANTITY)
# Rows beyond these cannot be real and would overflow sums (a price of 1e308 times a quantity
# is inf, and every statistic after it NaN): they are skipped and counted, never fatal. The
# API refuses them at ingest (serving.schemas: MAX_PRICE, MAX_QUANTITY); other writers of the
# store may not.
MAX_PRICE = 1e9
MAX_QUANTITY = 1_000_000


class EventSource(Protocol):
    """What the readout needs from an event store (``serving.event_store.SQLiteEventStore``).

    Exposures are read with ``iter_exposures(experiment)`` when the store has it, else from the
    ``exposures`` table of the SQLite file at ``path``.
    """

    def iter_events(self, *, user_id: str | None = None,
                    event_types: Sequence[str] | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> Iterator[dict[str, Any]]: ...


class VariantSpec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...


class ExperimentSpec(Protocol):
    """An experiment config (``serving.experiments.Experiment`` fits): a name and weighted
    variants."""

    @property
    def name(self) -> str: ...

    @property
    def variants(self) -> Sequence[VariantSpec]: ...


# ---------------------------------------------------------------------- reading the store
def load_exposures(store: object, experiment: str) -> pd.DataFrame:
    """The experiment's exposures: request_id, variant, unit, created_at (UTC)."""
    reader = getattr(store, "iter_exposures", None)
    if callable(reader):
        rows = [(r["request_id"], r["variant"], r["unit"], r["created_at"])
                for r in reader(experiment)]
        created = pd.to_datetime([r[3] for r in rows], utc=True)
    else:
        path = getattr(store, "path", None)
        if path is None:
            raise DataError(f"{type(store).__name__} has neither iter_exposures() nor a SQLite "
                            "path: cannot read exposures")
        conn = sqlite3.connect(Path(path), timeout=10.0)
        try:
            rows = conn.execute("SELECT request_id, variant, unit, created_at_us FROM exposures "
                                "WHERE experiment = ? ORDER BY created_at_us, request_id",
                                (experiment,)).fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"{path}: cannot read exposures ({exc})") from None
        finally:
            conn.close()
        created = pd.to_datetime(np.array([r[3] for r in rows], dtype=np.int64), unit="us",
                                 utc=True)
    return pd.DataFrame({"request_id": [str(r[0]) for r in rows],
                         VARIANT: [str(r[1]) for r in rows], UNIT: [str(r[2]) for r in rows],
                         "created_at": created})


def load_events(store: EventSource) -> pd.DataFrame:
    """Stored impressions, clicks, carts and purchases as a frame (views are not read)."""
    rows = list(store.iter_events(event_types=READOUT_EVENT_TYPES))
    frame = pd.DataFrame(rows, columns=list(_EVENT_FRAME_COLUMNS))
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], utc=True, errors="coerce")
    return frame


# ---------------------------------------------------------------------- the unit-day table
@dataclass(frozen=True)
class ExperimentFrame:
    """``frame``: one row per (variant, unit, day) with the counts of ``COUNT_COLUMNS`` and the
    unit's constant pre-period columns (``PRE_COLUMNS``); ``start``/``end``: first exposure and
    last attributed activity; ``notes``: data caveats for the readout's warnings;
    ``rows_read``/``skipped``: stored events read, and those left out by reason."""

    frame: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    notes: tuple[str, ...]
    rows_read: int = 0
    skipped: Mapping[str, int] = dataclass_field(default_factory=dict)


def _unit_key(events: pd.DataFrame) -> pd.Series:
    """The unit an event belongs to by identity: the user id, else the session id."""
    user = events[C.USER_ID].astype(object)
    return user.where(user.notna(), events[C.SESSION_ID].astype(object))


def usable_rows(events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """``events`` without the rows the readout cannot use, and their counts by reason: no
    unit (neither user nor session id), an unreadable time, a price or quantity that is not
    finite, negative, or beyond :data:`MAX_PRICE` / :data:`MAX_QUANTITY`."""
    out = _normalise(events)
    price, qty = out[C.PRICE], out[C.QUANTITY]
    reasons = {
        "no user or session id": out["key"].isna(),
        "unreadable timestamp": out[C.TIMESTAMP].isna(),
        f"price not in 0..{MAX_PRICE:g}": price.notna() & ~price.between(0.0, MAX_PRICE),
        f"quantity not in 1..{MAX_QUANTITY:,}": ~qty.between(1.0, MAX_QUANTITY),
    }
    bad = pd.Series(False, index=out.index)
    skipped = {}
    for reason, mask in reasons.items():
        mask = mask & ~bad          # each row counted once, under its first reason
        if mask.any():
            skipped[reason] = int(mask.sum())
        bad |= mask
    return out[~bad].reset_index(drop=True), skipped


def _normalise(events: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: events[c] if c in events.columns else None
                        for c in _EVENT_FRAME_COLUMNS})
    out[C.TIMESTAMP] = pd.to_datetime(out[C.TIMESTAMP], utc=True, errors="coerce").astype(
        "datetime64[ns, UTC]")
    out[C.EVENT_TYPE] = out[C.EVENT_TYPE].astype(str)
    out[C.PRICE] = pd.to_numeric(out[C.PRICE], errors="coerce").astype(np.float64)
    out[C.QUANTITY] = pd.to_numeric(out[C.QUANTITY], errors="coerce").fillna(1.0).astype(
        np.float64)
    out["request_id"] = out["request_id"].astype(object)
    out["key"] = _unit_key(out)
    return out


def _purchase_value(events: pd.DataFrame) -> pd.Series:
    buy = events[C.EVENT_TYPE] == C.PURCHASE
    return (events[C.PRICE].fillna(0.0) * events[C.QUANTITY]).where(buy, 0.0)


def _pre_period(store_pre: pd.DataFrame, outside: pd.DataFrame | None, units: pd.Index,
                start: pd.Timestamp, pre_days: float | None) -> pd.DataFrame:
    """Per unit: revenue, purchases and events before ``start`` (store + outside events)."""
    parts = [store_pre]
    if outside is not None and len(outside):
        ext, _ = usable_rows(outside)
        parts.append(ext[ext["key"].isin(units) & (ext[C.TIMESTAMP] < start)])
    pre = pd.concat(parts, ignore_index=True)
    if pre_days is not None:
        pre = pre[pre[C.TIMESTAMP] >= start - pd.Timedelta(days=pre_days)]
    # the same event may be in the store and in the outside log
    pre = pre.drop_duplicates(["key", C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP])
    sums = pd.DataFrame({"key": pre["key"].to_numpy(), "pre_revenue": _purchase_value(pre),
                         "pre_purchases": (pre[C.EVENT_TYPE] == C.PURCHASE).astype(np.float64),
                         "pre_events": 1.0}).groupby("key").sum()
    return sums.reindex(units, fill_value=0.0)


def experiment_frame(
    exposures: pd.DataFrame, events: pd.DataFrame, *, pre_events: pd.DataFrame | None = None,
    pre_period: Mapping[str, float] | pd.Series | None = None, pre_days: float | None = None,
) -> ExperimentFrame:
    """Join exposures and events into per-(variant, unit, day) rows (see the module docstring
    for the attribution rules). ``pre_events``: canonical events from outside the store whose
    user ids are units (e.g. the synthetic shop's log) for the CUPED pre-period; ``pre_period``:
    an explicit covariate per unit that replaces the computed ``pre_revenue``; ``pre_days``:
    only the last days before the start count as pre-period (default: all)."""
    if exposures.empty:
        raise DataError("no exposures for this experiment: nothing to read out")
    ev, skipped = usable_rows(events)
    exp = exposures.copy()
    linked = ev["request_id"].isin(set(exp["request_id"]))
    first_event = ev.loc[linked].groupby("request_id")[C.TIMESTAMP].min()
    # reindex, not map: Series.map with an empty datetime mapper fails in pandas 2
    seen = first_event.reindex(exp["request_id"]).set_axis(exp.index)
    exp["time"] = exp["created_at"].where(seen.isna() | (exp["created_at"] <= seen), seen)
    mixed = exp.groupby(UNIT)[VARIANT].nunique()
    if (mixed > 1).any():
        bad = list(mixed.index[mixed > 1][:5])
        raise DataError(f"{int((mixed > 1).sum())} units were exposed to more than one variant "
                        f"(e.g. {bad}); the assignment is broken, the readout would be biased")
    unit_start = exp.groupby(UNIT)["time"].min()
    unit_variant = exp.groupby(UNIT)[VARIANT].first()
    start = unit_start.min()

    by_request = exp.set_index("request_id")[UNIT]
    key_start = ev["key"].map(unit_start)
    later = ~linked & key_start.notna() & (ev[C.TIMESTAMP] >= key_start)
    ev[UNIT] = ev["request_id"].map(by_request).where(linked, ev["key"].where(later))
    during = ev[ev[UNIT].notna()].copy()
    types = during[C.EVENT_TYPE]
    purchases = types == C.PURCHASE
    order_key = pd.DataFrame({"u": during[UNIT], "s": during[C.SESSION_ID].fillna(""),
                              "t": during[C.TIMESTAMP]})
    counts = pd.DataFrame({
        VARIANT: during[UNIT].map(unit_variant), UNIT: during[UNIT],
        DAY: during[C.TIMESTAMP].dt.floor("D"), "exposures": 0.0,
        "impressions": (types == IMPRESSION).astype(np.float64),
        "clicks": (types == C.CLICK).astype(np.float64),
        "carts": (types == C.ADD_TO_CART).astype(np.float64),
        "purchases": purchases.astype(np.float64), "revenue": _purchase_value(during),
        "orders": 0.0,
    })
    # one order per checkout: the first purchase line of each (unit, session, timestamp)
    counts.loc[purchases, "orders"] = (~order_key[purchases].duplicated()).astype(np.float64)
    exposed = pd.DataFrame({VARIANT: exp[VARIANT], UNIT: exp[UNIT],
                            DAY: exp["time"].dt.floor("D"), "exposures": 1.0})
    rows = pd.concat([exposed, counts], ignore_index=True).fillna(
        {c: 0.0 for c in COUNT_COLUMNS})
    frame = rows.groupby([VARIANT, UNIT, DAY], sort=True)[list(COUNT_COLUMNS)].sum().reset_index()

    units = pd.Index(unit_start.index)
    store_pre = ev[~linked & ev["key"].isin(units) & (ev[C.TIMESTAMP] < start)]
    pre = _pre_period(store_pre, pre_events, units, start, pre_days)
    notes = []
    if pre_period is not None:
        given = pd.Series(pre_period, dtype=np.float64).reindex(units)
        if given.isna().any():
            notes.append(f"{int(given.isna().sum())} units have no pre_period value: taken as 0")
        pre["pre_revenue"] = given.fillna(0.0).to_numpy()
    for col in PRE_COLUMNS:
        frame[col] = frame[UNIT].map(pre[col]).astype(np.float64)
    missing_price = int((purchases & during[C.PRICE].isna()).sum())
    if missing_price:
        notes.append(f"{missing_price} attributed purchases have no price: counted as 0 revenue")
    end = max(exp["time"].max(), during[C.TIMESTAMP].max() if len(during) else start)
    if skipped:
        notes.append(f"{sum(skipped.values())} stored event(s) skipped as unusable: "
                     + ", ".join(f"{n} {reason}" for reason, n in skipped.items()))
    return ExperimentFrame(frame, start, end, tuple(notes), len(events), skipped)


# ---------------------------------------------------------------------- the readout
def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _intervals(frame: pd.DataFrame, alpha: float) -> dict[str, dict[str, list[float]]]:
    """Per variant and metric, the ``1 - alpha`` interval of the variant's own estimate: Student
    t for per-unit means, normal (delta method) for ratio metrics."""
    units = unit_table(frame)
    out: dict[str, dict[str, list[float]]] = {}
    for name, metric in METRICS.items():
        mom = metric_moments(units, metric)
        for variant, row in mom.iterrows():
            dist = stats.norm() if metric.is_ratio else stats.t(max(row["n"] - 1, 1))
            half = float(dist.ppf(1 - alpha / 2)) * math.sqrt(row["se2"])
            out.setdefault(str(variant), {})[name] = [row["value"] - half, row["value"] + half]
    return out


def _sequential(frame: pd.DataFrame, metric: str, treatment: str, control: str, alpha: float,
                tau2: float | None, min_units: int) -> dict[str, Any]:
    """Daily mSPRT for one metric; ``tau2`` None: chosen for the variance at the last look."""
    source = "given"
    if tau2 is None:
        mom = metric_moments(unit_table(frame), metric).reindex([control, treatment])
        var = float(mom["se2"].sum())
        if not (math.isfinite(var) and var > 0):
            return {"metric": metric, "variant": treatment, "tau2": None, "looks": [],
                    "note": "no variance yet: no sequential test"}
        tau2, source = horizon_tau2(var, alpha), "last look"
    looks = sequential_test(frame, metric, treatment=treatment, tau2=tau2, control=control,
                            alpha=alpha, min_units=min_units)
    q = float(stats.norm.ppf(1 - alpha / 2))
    looks["ci_low"] = looks["diff"] - q * looks["se"]
    looks["ci_high"] = looks["diff"] + q * looks["se"]
    with np.errstate(divide="ignore", invalid="ignore"):
        fixed_p = 2 * stats.norm.sf(np.abs(looks["diff"] / looks["se"]))
        looks["rel_lift"] = looks["diff"] / looks["control"]
    looks["fixed_p_value"] = np.where(looks["ready"], fixed_p, np.nan)
    rejected = looks.loc[looks["reject"], "day"]
    # The sequence is intersected over looks, which assumes one constant effect. A per-unit
    # metric that grows as units stay longer (conversion) has a drifting difference, and the
    # intersection can come out empty; the p-value (H0: no difference at any look) stays valid.
    empty = looks.loc[looks["cs_low"] > looks["cs_high"], "day"]
    last = looks.iloc[-1]
    return {"metric": metric, "variant": treatment, "tau2": tau2, "tau2_source": source,
            "empty_sequence_since": empty.iloc[0] if len(empty) else None,
            "first_reject_day": rejected.iloc[0] if len(rejected) else None,
            "p_value": last["p_value"], "cs_low": last["cs_low"], "cs_high": last["cs_high"],
            "reject": bool(last["reject"]), "looks": _records(looks)}


def _guardrails(observed: Mapping[str, Mapping[str, float]] | None,
                thresholds: GuardrailThresholds | None, variants: Sequence[str]
                ) -> dict[str, Any]:
    """Checks for every variant and guardrail; a value the caller did not give is 'not
    measured' (the event store records neither latency nor fallbacks)."""
    limits = None if thresholds is None else {"latency_p99_ms": thresholds.latency_p99_ms,
                                              "fallback_rate": thresholds.fallback_rate}
    complete = {v: {m: float(observed[v][m]) for m in GUARDRAIL_METRICS}
                for v in variants if observed and v in observed
                and all(observed[v].get(m) is not None for m in GUARDRAIL_METRICS)}
    verdicts = {(c.variant, c.metric): c.passed for c in check_guardrails(complete, thresholds)
                } if thresholds is not None else {}
    checks = []
    for v in variants:
        for m in GUARDRAIL_METRICS:
            raw = (observed or {}).get(v, {}).get(m)
            value = None if raw is None or not math.isfinite(float(raw)) else float(raw)
            if value is None:
                status = "not measured"
            elif limits is None:
                status = "no threshold"
            else:
                status = "passed" if verdicts.get((v, m), value <= limits[m]) else "failed"
            checks.append({"variant": v, "metric": m, "value": value,
                           "threshold": None if limits is None else limits[m], "status": status})
    statuses = {c["status"] for c in checks}
    overall = ("failed" if "failed" in statuses else "not measured"
               if statuses == {"not measured"} else "partly measured"
               if "not measured" in statuses else "passed" if statuses == {"passed"}
               else "no threshold")
    note = ("the event store records neither latency nor fallbacks; pass observations "
            "(e.g. the API's live guardrails) to check them") if overall == "not measured" else ""
    return {"status": overall, "note": note, "checks": checks}


def build_readout(
    data: ExperimentFrame, weights: Mapping[str, float], *, name: str,
    control: str | None = None, alpha: float = 0.05, tau2: Mapping[str, float] | None = None,
    guardrails: Mapping[str, Mapping[str, float]] | None = None,
    thresholds: GuardrailThresholds | None = None,
    sequential_metrics: Sequence[str] = SEQUENTIAL_METRICS, min_units: int = MIN_UNITS,
) -> dict[str, Any]:
    """The readout of ``data`` as a JSON-ready dict (NaN -> None, times -> ISO text).

    ``weights``: configured split (for SRM); ``control``: default "control" when configured,
    else the first variant; ``tau2``: mSPRT mixture variance per metric, fixed before the
    experiment (e.g. from an A/A or pre-period); where missing it is set for the variance at
    the last look, which moves power only, and the readout says so; ``guardrails``: observed
    ``{variant: {"latency_p99_ms": .., "fallback_rate": ..}}`` (not in the store).
    """
    variants = list(weights)
    control = control or ("control" if "control" in weights else variants[0])
    if control not in weights:
        raise DataError(f"control {control!r} is not a configured variant {variants}")
    frame = data.frame
    warnings_: list[str] = list(data.notes)
    summary = variant_summary(frame).reindex(variants)
    units = summary["units"].fillna(0).astype(int)
    srm = check_srm(units.to_dict(), weights)
    if srm.mismatch:
        warnings_.append(f"sample ratio mismatch: units {srm.observed} vs weights "
                         f"{dict(weights)} (p = {srm.p_value:.2e} < {SRM_P_THRESHOLD}); the "
                         "assignment or logging lost units unevenly, do not trust the lifts")
    present = [v for v in variants if units[v] >= 2]
    lift: list[dict[str, Any]] = []
    cuped: dict[str, Any] = {"covariate": CUPED_COVARIATE, "applied": False, "rows": []}
    sequential: list[dict[str, Any]] = []
    if control in present and len(present) > 1:
        kept = frame[frame[VARIANT].isin(present)]
        lift = _adjusted(_records(compare_variants(kept, control=control, alpha=alpha)), alpha)
        pre_units = unit_table(kept, pre_columns=[CUPED_COVARIATE])[CUPED_COVARIATE]
        cuped["units_with_pre_revenue"] = int((pre_units > 0).sum())
        if pre_units.nunique() > 1:
            cuped["applied"] = True
            cuped["rows"] = _records(compare_variants(
                kept, control=control, metrics=["revenue_per_unit"], alpha=alpha,
                cuped={"revenue_per_unit": CUPED_COVARIATE}))
        else:
            cuped["note"] = "no unit has pre-period activity: CUPED not applied"
        for treatment in (v for v in present if v != control):
            for metric in sequential_metrics:
                seq = _sequential(kept, metric, treatment, control, alpha,
                                  (tau2 or {}).get(metric), min_units)
                sequential.append(seq)
                if seq.get("empty_sequence_since") is not None:
                    warnings_.append(
                        f"{metric} ({treatment}): the always-valid confidence sequence is empty "
                        f"since {seq['empty_sequence_since']:%Y-%m-%d}; the difference drifts "
                        "over the days (a per-unit rate grows as units stay longer), so read "
                        "its always-valid p-value, not the interval")
    else:
        warnings_.append(f"control {control!r} and at least one other variant need >= 2 units "
                         f"each for a comparison (units: {units.to_dict()})")
    days = sorted(frame[DAY].unique())
    readout = {
        "experiment": name, "control": control, "alpha": alpha,
        "variants": [{"name": v, "weight": float(weights[v])} for v in variants],
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {"start": data.start, "end": data.end, "days": len(days)},
        "summary": {v: {"units": int(units[v]), **{k: summary.loc[v, k] for k in summary.columns
                                                   if k != "units"}} for v in variants},
        "intervals": _intervals(frame, alpha), "lift": lift,
        "multiple_testing": {"method": HOLM, "family": "every lift row of this readout (each "
                             "metric of each treatment against control)", "tests": sum(
                                 r.get("p_value") is not None for r in lift), "alpha": alpha},
        "cuped": cuped,
        "srm": {"chi2": srm.chi2, "p_value": srm.p_value, "observed": srm.observed,
                "expected": srm.expected, "mismatch": srm.mismatch,
                "threshold": SRM_P_THRESHOLD},
        "sequential": sequential, "min_units_per_look": min_units,
        "guardrails": _guardrails(guardrails, thresholds, variants),
        "data_quality": {"rows_read": data.rows_read,
                         "rows_skipped": sum(data.skipped.values()),
                         "skipped": dict(data.skipped)},
        "warnings": warnings_,
    }
    return jsonable(readout)


def _adjusted(rows: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """``rows`` with Holm-adjusted p-values over all of them, beside the raw ones."""
    adjusted = adjust([_finite_or_none(r.get("p_value")) for r in rows], HOLM)
    for row, p in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = p
        row["significant_adjusted"] = None if p is None else bool(p < alpha)
    return rows


def _finite_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def empty_readout(name: str, weights: Mapping[str, float], note: str) -> dict[str, Any]:
    """The readout of an experiment without data yet: every section empty, one warning."""
    return jsonable({
        "experiment": name, "control": "control" if "control" in weights else next(iter(weights)),
        "alpha": 0.05, "variants": [{"name": v, "weight": float(w)} for v, w in weights.items()],
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {"start": None, "end": None, "days": 0}, "summary": {}, "intervals": {},
        "lift": [],
        "cuped": {"covariate": CUPED_COVARIATE, "applied": False, "rows": []}, "srm": None,
        "sequential": [], "min_units_per_look": MIN_UNITS,
        "guardrails": _guardrails(None, None, list(weights)), "warnings": [note],
    })


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, NaN/inf as None and times as ISO text."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (pd.Timestamp, datetime)):
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()
    if value is None or value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def _weights(experiment: ExperimentSpec | Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    if isinstance(experiment, Mapping):
        return str(experiment["name"]), {str(v["name"]): float(v["weight"])
                                         for v in experiment["variants"]}
    return experiment.name, {v.name: float(v.weight) for v in experiment.variants}


def experiment_results(
    store: EventSource, experiment: ExperimentSpec | Mapping[str, Any], *,
    pre_events: pd.DataFrame | None = None,
    pre_period: Mapping[str, float] | pd.Series | None = None,
    guardrails: Mapping[str, Mapping[str, float]] | None = None,
    thresholds: GuardrailThresholds | None = None, tau2: Mapping[str, float] | None = None,
    alpha: float = 0.05, control: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready readout of ``experiment`` (a ``serving.experiments.Experiment`` or a dict
    with ``name`` and ``variants[{name, weight}]``) from ``store``; see :func:`build_readout`.
    An experiment without exposures yet gives :func:`empty_readout`.

    >>> # experiment_results(store, {"name": "e", "variants": [
    >>> #     {"name": "control", "weight": .5}, {"name": "treatment", "weight": .5}]})
    """
    name, weights = _weights(experiment)
    exposures = load_exposures(store, name)
    if exposures.empty:
        return empty_readout(name, weights, f"no exposures recorded for experiment {name!r} yet")
    data = experiment_frame(exposures, load_events(store), pre_events=pre_events,
                            pre_period=pre_period)
    return build_readout(data, weights, name=name, control=control, alpha=alpha, tau2=tau2,
                         guardrails=guardrails, thresholds=thresholds)
