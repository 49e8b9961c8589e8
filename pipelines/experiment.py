"""``recsys experiment report`` and ``recsys experiment plan``.

``report`` reads an experiment's exposures and events from the event store the API writes,
prints the readout summary and writes ``report.html`` + ``readout.json``
(:mod:`evaluation.experiment_readout`). The experiment's split and the guardrail limits come
from the serving config; with ``--server`` the live guardrails (p99 latency, fallback rate) of
a running API are added, since the store records neither. ``plan`` answers "how many units per
variant?" for a conversion-type metric (:mod:`evaluation.planning`).

Also runnable as ``python -m pipelines.experiment report NAME --out DIR``::

    recsys experiment report popularity-vs-hybrid --config configs/serving.toml \\
        --pre-data runs/shop --out runs/ab
    recsys experiment plan --baseline-rate 0.05 --mde 0.10
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError, DataError, RecsysError

DEFAULT_CONFIG = "configs/serving.toml"
READ_KEY_ENV = "RECSYS_READ_KEY"   # or the admin key: both may read experiments


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``recsys experiment report``."""
    parser.add_argument("name", help="experiment name (as in the serving config)")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"serving TOML with the experiment (default {DEFAULT_CONFIG})")
    parser.add_argument("--store", help="event store (SQLite file or postgresql:// URL; "
                        "default: the config's event_store)")
    parser.add_argument("--out", required=True, help="directory for report.html and readout.json")
    parser.add_argument("--pre-data", help="dataset directory whose events are the units' "
                        "pre-period for CUPED (e.g. the synthetic shop); the store's own events "
                        "before the experiment always count")
    parser.add_argument("--server", help="running API to read live guardrails from "
                        "(GET /v1/experiments/NAME, with the read key from the environment "
                        f"variable {READ_KEY_ENV}); default: guardrails not measured")
    parser.add_argument("--tau2", action="append", default=[], metavar="METRIC=VALUE",
                        help="mSPRT mixture variance for a metric, fixed before the experiment "
                        "(repeatable; default: set from the variance at the last look)")
    parser.add_argument("--alpha", type=float, default=0.05, help="default 0.05")


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``recsys experiment plan``."""
    parser.add_argument("--baseline-rate", type=float, required=True,
                        help="control's conversion-type rate, e.g. 0.05")
    parser.add_argument("--mde", type=float, required=True,
                        help="minimum detectable effect: 0.10 = +10%% relative (default), or "
                        "+0.10 absolute with --absolute")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--relative", dest="relative", action="store_true", default=True,
                      help="read --mde as a relative change (default)")
    kind.add_argument("--absolute", dest="relative", action="store_false",
                      help="read --mde as an absolute change of the rate")
    parser.add_argument("--alpha", type=float, default=0.05, help="two-sided level (0.05)")
    parser.add_argument("--power", type=float, default=0.8, help="default 0.8")
    parser.add_argument("--method", choices=["arcsine", "normal"], default="arcsine",
                        help="arcsine (statsmodels, default) or the normal closed form")
    parser.add_argument("--daily-units", type=int,
                        help="new units entering the experiment per day: also print the days")


def _tau2(values: Sequence[str]) -> dict[str, float]:
    from evaluation.experiment_stats import METRICS

    out = {}
    for raw in values:
        metric, sep, value = raw.partition("=")
        if not sep or metric not in METRICS:
            raise ConfigError(f"--tau2 {raw!r}: expected METRIC=VALUE with METRIC one of "
                              f"{', '.join(METRICS)}")
        try:
            out[metric] = float(value)
        except ValueError:
            raise ConfigError(f"--tau2 {raw!r}: {value!r} is not a number") from None
        if not out[metric] > 0:
            raise ConfigError(f"--tau2 {raw!r}: must be > 0")
    return out


def live_guardrails(server: str, name: str) -> dict[str, dict[str, float]]:
    """``{variant: {guardrail: value}}`` from ``GET /v1/experiments/{name}`` of a running API
    (only variants whose window already has a verdict)."""
    import httpx

    key = os.environ.get(READ_KEY_ENV) or os.environ.get("RECSYS_ADMIN_KEY")
    if not key:
        raise ConfigError(f"--server: reading live guardrails needs the API's read key in the "
                          f"environment variable {READ_KEY_ENV}")
    try:
        r = httpx.get(f"{server.rstrip('/')}/v1/experiments/{name}", timeout=10.0,
                      headers={"X-API-Key": key})
    except httpx.HTTPError as exc:
        raise RecsysError(f"--server {server}: {exc}") from None
    if r.status_code != 200:
        raise RecsysError(f"--server {server}: GET /v1/experiments/{name} -> HTTP "
                          f"{r.status_code}: {r.text[:200]}")
    counts: dict[str, Any] = r.json().get("counts", {})
    return {variant: {g["name"]: float(g["value"]) for g in live.get("guardrails", [])}
            for variant, live in counts.items() if live.get("guardrails")}


def experiment_report_command(args: argparse.Namespace) -> None:
    """Print the readout summary of experiment ``args.name`` and write the report."""
    from evaluation.experiment_readout import experiment_results, summary_lines, write_report
    from evaluation.experiment_stats import GuardrailThresholds
    from recsys.data.validate import load_dataset
    from serving.event_store import is_postgres_url, open_store
    from serving.settings import load_settings

    if not Path(args.config).is_file():
        raise ConfigError(f"--config {args.config}: no such file (the experiment's variants and "
                          "weights come from the serving config)")
    settings = load_settings(args.config)
    try:
        experiment = settings.experiments_config().get(args.name)
    except KeyError as exc:
        raise ConfigError(f"{args.config}: {exc.args[0]}") from None
    location = args.store or settings.event_store
    if not is_postgres_url(location) and not Path(location).is_file():
        raise DataError(f"event store {location} does not exist")
    pre_events = load_dataset(args.pre_data).events if args.pre_data else None
    g = settings.guardrails
    thresholds = GuardrailThresholds(g.latency_p99_ms, g.fallback_rate)
    observed = live_guardrails(args.server, args.name) if args.server else None
    with open_store(location, audit_secret=settings.privacy.resolve_secret()) as store:
        readout = experiment_results(store, experiment, pre_events=pre_events,
                                     guardrails=observed, thresholds=thresholds,
                                     tau2=_tau2(args.tau2), alpha=args.alpha)
    for line in summary_lines(readout):
        print(line)
    path = write_report(readout, args.out)
    print(f"report: {path} (and {path.parent / 'readout.json'})")


def experiment_plan_command(args: argparse.Namespace) -> None:
    """Print the units per variant for the planned baseline rate and MDE."""
    from evaluation.planning import target_rate, units_per_variant

    target = target_rate(args.baseline_rate, args.mde, relative=args.relative)
    n = units_per_variant(args.baseline_rate, args.mde, relative=args.relative,
                          alpha=args.alpha, power=args.power, method=args.method)
    kind = "relative" if args.relative else "absolute"
    print(f"baseline {args.baseline_rate:.4%} -> {target:.4%} ({kind} MDE {args.mde:g}), "
          f"alpha {args.alpha:g} two-sided, power {args.power:g}, {args.method}")
    print(f"units per variant: {n:,} ({2 * n:,} for two equal variants)")
    if args.daily_units is not None:
        if args.daily_units < 1:
            raise ConfigError(f"--daily-units must be >= 1, got {args.daily_units}")
        days = math.ceil(2 * n / args.daily_units)
        print(f"days at {args.daily_units:,} new units a day: {days:,}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys experiment",
                                     description="A/B experiment readout and planning")
    sub = parser.add_subparsers(dest="action", required=True)
    add_report_arguments(sub.add_parser("report", help="readout of one experiment"))
    add_plan_arguments(sub.add_parser("plan", help="units per variant"))
    args = parser.parse_args(argv)
    try:
        (experiment_report_command if args.action == "report" else experiment_plan_command)(args)
    except RecsysError as exc:
        print(f"recsys experiment {args.action}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
