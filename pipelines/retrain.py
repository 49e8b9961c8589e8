"""``recsys retrain``: the closed loop's training step, gated.

One run:

1. **data**: the original dataset directory plus the event store's events (exported from
   ``--store``, or an export already made, ``--events``), and optionally newer catalog rows
   (``--items``, later rows win per ``item_id``), then the catalog API's changes kept in
   ``--store`` (items launched or edited through ``PUT /v1/catalog/items``: without them the
   events of a launched item would be dropped as naming an unknown item), written as one
   dataset to
   ``REGISTRY/work/data`` (validation drops exact duplicates, so events present in both
   count once);
2. **candidate**: :meth:`HybridRecommender.fit` on all of it (the production pipeline and
   config: ``--config``, else the champion's own config), registered in the registry;
3. **gate**: the candidate against the champion on the latest window of that data, by the
   rules and the code of ``recsys gate`` (:func:`pipelines.gate.gate`): a side that saw the
   window is refitted on the events before it, as production would have fitted it then. The
   window starts after the champion's data whenever there are enough newer events
   (:func:`gate_window`), so that the champion is scored as it is and the candidate shows
   what the new events taught it;
4. **promotion** on a pass (the pointer changes, and with ``--store`` is published to the
   store's control log for its replicas; serving follows within its poll interval);
   on a fail the champion stays, and the reasons are printed and kept in the version's
   record (``recsys models list``). A registry without a champion promotes its first
   candidate without a gate (nothing to compare with), and says so.

Exit code 0 when the candidate was promoted, 1 when the gate refused it.

``--every 6h`` repeats this as a long-lived process: a run at start (unless ``--wait-first``),
then every interval, and at once when the trigger file exists (``REGISTRY/retrain.trigger`` by
default; the drift monitor writes it when an alert fires). SIGTERM or SIGINT stops it: while
waiting, at once; during a run, when the run has finished (a fit is not cut halfway).

Example::

    recsys retrain --registry var/registry --data data/shop --store var/events.db
    recsys retrain --registry var/registry --data data/shop --store var/events.db --every 6h
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from recsys import columns as C
from recsys.config import TrainConfig, load_train_config
from recsys.data.io import write_dataset
from recsys.data.validate import load_dataset, validate_items
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.manifest import Manifest
from recsys.registry import Registry

log = logging.getLogger(__name__)
TRIGGER = "retrain.trigger"
WORK = "work"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EVENT_COLUMNS = (C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE, C.QUANTITY, C.PRICE,
                 C.SESSION_ID, C.DEVICE)


def parse_interval(text: str) -> float:
    """``"6h"`` -> 21600.0; units s, m, h, d (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"interval {text!r}: expected a positive number with a unit s, m, h "
                          "or d, e.g. '6h'")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class RetrainResult:
    version: str
    promoted: bool
    champion: str | None           # the champion it was compared with
    lines: list[str]               # the gate's lines (empty without a comparison)

    @property
    def exit_code(self) -> int:
        return 0 if self.promoted else 1


def _plain(frame: pd.DataFrame, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Plain values (categoricals of two sources do not concat)."""
    cols = [c for c in (columns or tuple(frame.columns)) if c in frame.columns]
    out = frame[cols].copy()
    for c in cols:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(object)
    return out


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def merge_data(data_dir: str | Path, events_dir: str | Path | None, out: Path,
               items_file: str | Path | None = None,
               changes: pd.DataFrame | None = None) -> Path:
    """The original dataset plus the exported events (and newer catalog rows, then the catalog
    API's ``changes``, see :func:`store_catalog`) as one dataset directory ``out``, validated
    on the way in."""
    original = load_dataset(data_dir)
    events = [_plain(original.events, EVENT_COLUMNS)]
    if events_dir is not None:
        path = Path(events_dir) / "events.parquet"
        if not path.is_file():
            raise DataError(f"{path}: not found (an export of `recsys events export`)")
        events.append(_plain(pd.read_parquet(path), EVENT_COLUMNS))
    items = original.items
    if items_file is not None:
        newer = validate_items(read_table(Path(items_file)))
        items = pd.concat([_plain(items), _plain(newer)], ignore_index=True)
        items = items.drop_duplicates(C.ITEM_ID, keep="last").reset_index(drop=True)
    if changes is not None and len(changes):
        items = apply_changes(items, changes)
    merged = pd.concat(events, ignore_index=True)
    shutil.rmtree(out, ignore_errors=True)
    write_dataset(out, merged, items)
    load_dataset(out)       # fail here, naming the row, rather than inside the fit
    return out


def store_catalog(store: str) -> pd.DataFrame | None:
    """The catalog API's changes kept in ``store``'s control log, merged per item (a later
    change's fields win), as the frame serving applies; None when there are none."""
    from serving.catalog import changes_frame
    from serving.event_store import CATALOG, open_store

    with open_store(store) as s:
        records = s.control_log(kind=CATALOG)
    changes = [c for r in records for c in r.payload.get("items", [])]
    return changes_frame(changes) if changes else None


def apply_changes(items: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """``items`` with the catalog API's changes applied field by field (a field a change
    leaves out keeps its value; a new item's missing fields get validation's defaults). Delisting
    is not a training matter: serving applies it again to every bundle it loads."""
    table = _plain(items)
    table[C.ITEM_ID] = table[C.ITEM_ID].astype(str)
    table = table.set_index(C.ITEM_ID)
    changes = changes.drop(columns=[c for c in changes.columns
                                    if c != C.ITEM_ID and c not in C.ITEM_COLUMNS])
    changes = changes.assign(**{C.ITEM_ID: changes[C.ITEM_ID].astype(str)}).set_index(C.ITEM_ID)
    new_ids = changes.index.difference(table.index, sort=False)
    if len(new_ids):
        table = pd.concat([table, pd.DataFrame(index=new_ids)])
    for column in changes.columns:
        given = changes[column].dropna()
        if column not in table:
            table[column] = pd.NA
        table[column] = table[column].astype(object)
        table.loc[given.index, column] = given.to_numpy()
    return table.rename_axis(C.ITEM_ID).reset_index()


def export_store(store: str, out: Path) -> Path:
    from serving.event_store import is_postgres_url, open_store

    if not is_postgres_url(store) and not Path(store).is_file():
        raise DataError(f"event store {store} does not exist")
    shutil.rmtree(out, ignore_errors=True)
    with open_store(store) as s:
        summary = s.export_events(out)
    log.info("exported %d events from %s", summary.events, store)
    return out


def retrain_once(registry: Registry, data_dir: str | Path, *, store: str | None = None,
                 events_dir: str | Path | None = None, items_file: str | Path | None = None,
                 config: TrainConfig | None = None, rules: str | Path | None = None,
                 cutoff: str | None = None, reason: str = "scheduled", quiet: bool = False
                 ) -> RetrainResult:
    """One retrain: data, candidate, gate, promotion (see the module docstring)."""
    from pipelines.gate import gate
    from recsys.manifest import read_manifest
    from recsys.recommender import HybridRecommender

    def say(message: str) -> None:
        if not quiet:
            print(f"retrain: {message}", flush=True)

    work = registry.root / WORK
    work.mkdir(parents=True, exist_ok=True)
    with open(registry.root / ".retrain.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"registry {registry.root}: another retrain is running") from None
        started = time.perf_counter()
        changes = None
        if store is not None:
            events_dir = export_store(store, work / "export")
            changes = store_catalog(store)
        data = merge_data(data_dir, events_dir, work / "data", items_file, changes)
        champion = registry.champion()
        if config is None:
            config = (TrainConfig.model_validate(read_manifest(champion.path).config)
                      if champion is not None else TrainConfig())
        say(f"{reason}: fitting a candidate on {data} (champion: "
            f"{champion.version if champion else 'none'})")
        rec = HybridRecommender.fit(data, config)
        staging = work / "candidate"
        shutil.rmtree(staging, ignore_errors=True)
        manifest = rec.save(staging)
        version = registry.register(
            staging, move=True, source=f"retrain ({reason})",
            data={"original": str(Path(data_dir).resolve()), "store": store,
                  "events": None if events_dir is None else str(events_dir),
                  "items": None if items_file is None else str(items_file),
                  "fingerprint": manifest.data.fingerprint,
                  "history_end": str(_history_end(manifest))})
        say(f"candidate {version} registered ({time.perf_counter() - started:.0f}s)")
        if champion is None:
            registry.promote(version, reason="retrain: first champion (no gate: nothing to "
                             "compare with)")
            say(f"promoted {version}: the registry had no champion")
            return RetrainResult(version, True, None, [])
        start, why = gate_window(data, _history_end(read_manifest(champion.path)), cutoff)
        say(f"gate window from {start}: {why}")
        outcome = gate(registry.path_of(version), champion.path, data, rules=rules,
                       cutoff=start.isoformat(), quiet=True)
        lines = outcome.lines()
        registry.annotate(version, gate={"passed": outcome.passed, "champion": champion.version,
                                         "users": outcome.users, "lines": lines})
        for line in lines:
            say(line)
        if outcome.passed:
            registry.promote(version, reason=f"retrain ({reason}): passed the gate against "
                             f"{champion.version}")
            say(f"promoted {version} (was {champion.version}) in "
                f"{time.perf_counter() - started:.0f}s")
        else:
            failed = "; ".join(f"{r.rule} {r.metric}: {r.reason}" for r in outcome.rules
                               if not r.passed)
            say(f"refused {version}; {champion.version} stays champion: {failed}")
        return RetrainResult(version, outcome.passed, champion.version, lines)


MIN_NEW_EVENTS = 200     # fewer events after the champion's data: no window of their own


def gate_window(data: Path, champion_end: datetime | None, cutoff: str | None = None
                ) -> tuple[pd.Timestamp, str]:
    """Where the gate's window starts, and why.

    The candidate is fitted on the events before the window and the champion is scored as it
    is only when its data ended before the window; a window that starts inside the champion's
    data refits the champion's config on the same events as the candidate's, and with one
    config the two are the same model (the comparison says nothing about the new data). So:
    the gate's default window (the latest 15% of events) when it starts after the champion's
    data; else the later half of the events the champion never saw (the candidate learns from
    the first half); else, with fewer than ``MIN_NEW_EVENTS`` new events, the default window
    (both refitted: only a config change can show)."""
    from evaluation.backtest import cutoffs
    from pipelines.evaluate import utc

    events = load_dataset(data).events
    if cutoff is not None:
        return utc(cutoff), "given (--cutoff)"
    (default, _), = cutoffs(events)
    if champion_end is None:
        return default, "the latest 15% of events (the champion's data end is not recorded)"
    end = utc(pd.Timestamp(champion_end))
    if default >= end:
        return default, (f"the latest 15% of events, all after the champion's data (ends "
                         f"{end}): the champion is scored as it is")
    ts = events.loc[events[C.TIMESTAMP] >= end, C.TIMESTAMP].sort_values(ignore_index=True)
    if len(ts) < MIN_NEW_EVENTS:
        return default, (f"only {len(ts)} events after the champion's data (ends {end}): "
                         "both sides refitted before the latest 15% (only a config change "
                         "can show)")
    middle = pd.Timestamp(ts.iloc[len(ts) // 2])
    return middle, (f"the later half of the {len(ts):,} events after the champion's data "
                    f"(ends {end}); the candidate learns from the first half")


def _history_end(manifest: Manifest) -> datetime | None:
    span = manifest.data.spans.get("history")
    return None if span is None else span.end


def run_loop(once: Callable[[str], object], every_s: float, trigger: Path | None,
             stop: threading.Event, *, wait_first: bool = False, check_s: float = 5.0,
             stale: Callable[[str], str | None] | None = None) -> int:
    """Call ``once(reason)`` every ``every_s`` and whenever ``trigger`` appears (it is
    removed first), until ``stop`` is set; returns the number of runs. A run that fails is
    logged and the loop goes on. ``stale(text)`` says why a trigger needs no run (None: it
    does)."""
    next_due = time.monotonic() + (every_s if wait_first else 0.0)
    runs = 0
    while not stop.is_set():
        reason = None
        if trigger is not None and trigger.exists():
            text = trigger.read_text().strip()
            trigger.unlink(missing_ok=True)
            why = stale(text) if stale is not None else None
            if why is None:
                reason = f"triggered: {text or trigger}"
            else:
                print(f"retrain: trigger skipped ({text}): {why}", flush=True)
        elif time.monotonic() >= next_due:
            reason = "scheduled"
        if reason is not None:
            try:
                once(reason)
            except RecsysError as exc:
                log.error("retrain failed (%s); the champion stays: %s", reason, exc)
                print(f"retrain: failed ({reason}): {exc}", flush=True)
            runs += 1
            next_due = time.monotonic() + every_s
        stop.wait(max(0.01, min(check_s, next_due - time.monotonic())))
    return runs


def stale_trigger(registry: Registry) -> Callable[[str], str | None]:
    """A trigger names the bundle whose alert wrote it (``... bundle VERSION: ...``, see
    :mod:`serving.monitoring`); once another version is champion (a retrain promoted one since)
    the alert is answered. Every worker writes the trigger on its own alert, so without this
    one drift would start as many runs, back to back, as there are workers."""
    def why(text: str) -> str | None:
        match = re.search(r"\bbundle (\S+?):", text)
        champion = registry.champion()
        if match is None or champion is None or match.group(1) == champion.version:
            return None
        return f"{match.group(1)} is no longer the champion ({champion.version} is)"

    return why


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", required=True, help="the model registry directory")
    parser.add_argument("--data", required=True, help="the original dataset directory")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--store", help="the event store to export (a SQLite file or a "
                     "postgresql:// URL)")
    src.add_argument("--events", help="a directory with an events.parquet export instead")
    parser.add_argument("--items", help="newer catalog rows (CSV/Parquet, canonical items "
                        "columns) that replace or extend the original items")
    parser.add_argument("--config", help="pipeline TOML (default: the champion's config)")
    parser.add_argument("--rules", help="gate rules TOML (default: configs/gate.toml's rules)")
    parser.add_argument("--cutoff", help="start of the gate's window (ISO 8601; default: "
                        "the latest 15%% of events, or the later half of the events newer "
                        "than the champion's data when the champion saw those 15%%)")
    parser.add_argument("--every", help="run as a loop: every INTERVAL (e.g. 6h, 30m)")
    parser.add_argument("--trigger", help="loop: run at once when this file appears "
                        f"(default: REGISTRY/{TRIGGER})")
    parser.add_argument("--wait-first", action="store_true",
                        help="loop: wait one interval (or a trigger) before the first run")
    parser.add_argument("--check-every", type=float, default=5.0, metavar="SECONDS",
                        help="loop: how often the trigger file is looked for (default 5)")


def retrain_command(args: argparse.Namespace) -> int:
    from serving.champion import publishing_registry

    # with --store, the store's replicas read the champion pointer there too
    registry = publishing_registry(args.registry, args.store)
    config = load_train_config(args.config) if args.config else None

    def once(reason: str) -> RetrainResult:
        return retrain_once(registry, args.data, store=args.store, events_dir=args.events,
                            items_file=args.items, config=config, rules=args.rules,
                            cutoff=args.cutoff, reason=reason)

    if args.every is None:
        return once("by hand").exit_code
    every = parse_interval(args.every)
    trigger = Path(args.trigger) if args.trigger else registry.root / TRIGGER
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(f"retrain: {signal.Signals(signum).name}: stopping", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"retrain: every {args.every}, trigger file {trigger} "
          f"(started {datetime.now(UTC).isoformat(timespec='seconds')})", flush=True)
    runs = run_loop(once, every, trigger, stop, wait_first=args.wait_first,
                    check_s=args.check_every, stale=stale_trigger(registry))
    print(f"retrain: stopped after {runs} run(s)", flush=True)
    return 0
