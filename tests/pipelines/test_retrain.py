"""``recsys retrain``: a candidate trained on the original data plus the store's events is
gated against the champion; a better one is promoted, a worse one refused and never made
champion; the loop stops cleanly on SIGTERM and runs when the trigger file appears."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.gate import GateRules
from pipelines.retrain import merge_data, parse_interval, retrain_once, run_loop
from recsys import columns as C
from recsys.data.io import write_dataset
from recsys.errors import ConfigError
from recsys.registry import Registry
from tests.serving.conftest import _small_config

ROOT = Path(__file__).resolve().parents[2]
FAST = GateRules(n_resamples=300)
SPLIT_DAY = 24          # the "original data" ends here; the store holds the last days


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 30-day shop cut in two: the original dataset (days 0-24), and the events a server
    received afterwards in a SQLite event store; plus a corrupted copy of the original (every
    event's item replaced by a random one: the user-item signal is gone) and a short one
    (the first 6 days)."""
    from recsys.data.synthetic import ShopConfig, generate_shop
    from serving.event_store import open_store

    root = tmp_path_factory.mktemp("retrain")
    full = generate_shop(ShopConfig(users=300, items=200, days=30, seed=5))
    events, items = full.events, full.items
    t0 = events[C.TIMESTAMP].min()
    split = t0 + pd.Timedelta(days=SPLIT_DAY)
    before, after = events[events[C.TIMESTAMP] < split], events[events[C.TIMESTAMP] >= split]
    out = {"original": write_dataset(root / "original", before, items),
           "short": write_dataset(root / "short",
                                  before[before[C.TIMESTAMP] < t0 + pd.Timedelta(days=6)],
                                  items)}
    corrupted = before.copy()
    rng = np.random.default_rng(0)
    corrupted[C.ITEM_ID] = rng.choice(items[C.ITEM_ID].astype(str).to_numpy(), len(corrupted))
    out["corrupted"] = write_dataset(root / "corrupted", corrupted, items)
    store = root / "events.db"
    with open_store(store) as s:
        batch = []
        for n, row in enumerate(after.itertuples(index=False)):
            batch.append({"event_id": f"e{n}", C.USER_ID: str(getattr(row, C.USER_ID)),
                          C.ITEM_ID: str(getattr(row, C.ITEM_ID)),
                          C.EVENT_TYPE: str(getattr(row, C.EVENT_TYPE)),
                          C.TIMESTAMP: pd.Timestamp(getattr(row, C.TIMESTAMP)).isoformat(),
                          C.QUANTITY: int(getattr(row, C.QUANTITY)),
                          C.SESSION_ID: str(getattr(row, C.SESSION_ID))})
            if len(batch) == 1000:
                s.add_events(batch)
                batch = []
        if batch:
            s.add_events(batch)
    out["store"] = store
    return out


def champion_registry(tmp_path: Path, data: Path) -> tuple[Registry, str]:
    from pipelines.train import train

    registry = Registry(tmp_path / "registry")
    train(data, tmp_path / "champion", _small_config(seed=1), quiet=True)
    version = registry.register(tmp_path / "champion")
    registry.promote(version, reason="initial")
    return registry, version


def test_merge_keeps_original_and_store_events_once(shop: dict[str, Path],
                                                    tmp_path: Path) -> None:
    from pipelines.retrain import export_store
    from recsys.data.validate import load_dataset

    exported = export_store(str(shop["store"]), tmp_path / "export")
    once = merge_data(shop["original"], exported, tmp_path / "a")
    twice = merge_data(once, exported, tmp_path / "b")     # the export again: duplicates
    n_orig = len(load_dataset(shop["original"]).events)
    n_once, n_twice = len(load_dataset(once).events), len(load_dataset(twice).events)
    assert n_once > n_orig and n_twice == n_once


def test_a_better_candidate_is_promoted(shop: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The champion learnt from the first 6 days only; the candidate from everything."""
    registry, champion = champion_registry(tmp_path, shop["short"])
    result = retrain_once(registry, shop["original"], store=str(shop["store"]),
                          config=_small_config(seed=1), rules=None, quiet=False)
    out = capsys.readouterr().out
    assert result.promoted and result.exit_code == 0, out
    assert registry.champion().version == result.version != champion   # type: ignore[union-attr]
    assert "gate: PASS" in out and f"promoted {result.version} (was {champion})" in out
    info = {v.version: v for v in registry.versions()}[result.version]
    assert info.gate == "pass" and info.record["gate"]["champion"] == champion


def test_a_worse_candidate_is_refused_and_never_champion(shop: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """The same retrain on a corrupted copy of the original data (items scrambled) against a
    champion trained on the clean data: the gate refuses it and the champion stays."""
    registry, champion = champion_registry(tmp_path, shop["original"])
    gate_file = tmp_path / "gate.toml"
    gate_file.write_text("n_resamples = 300\n")
    result = retrain_once(registry, shop["corrupted"], store=str(shop["store"]),
                          config=_small_config(seed=1), rules=gate_file, quiet=True)
    assert not result.promoted and result.exit_code == 1
    assert registry.champion().version == champion          # type: ignore[union-attr]
    assert [h["version"] for h in registry.history()] == [champion]
    info = {v.version: v for v in registry.versions()}[result.version]
    assert info.gate == "fail" and "gate: FAIL" in result.lines[-1]


def test_parse_interval() -> None:
    assert parse_interval("6h") == 21600 and parse_interval("30m") == 1800
    assert parse_interval("90") == 90 and parse_interval("1.5d") == 129600
    for bad in ("0h", "6x", "h", "-1h"):
        with pytest.raises(ConfigError, match="interval"):
            parse_interval(bad)


def test_loop_runs_on_schedule_and_on_trigger_and_stops(tmp_path: Path) -> None:
    trigger = tmp_path / "retrain.trigger"
    stop = threading.Event()
    reasons: list[str] = []

    def once(reason: str) -> None:
        reasons.append(reason)
        if len(reasons) == 1:
            trigger.write_text("drift: score_psi 0.4")
        else:
            stop.set()

    thread = threading.Thread(target=run_loop, args=(once, 3600.0, trigger, stop),
                              kwargs={"check_s": 0.05})
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert reasons == ["scheduled", "triggered: drift: score_psi 0.4"]
    assert not trigger.exists()


def test_loop_process_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "retrain", "--registry", str(tmp_path / "r"),
         "--data", str(tmp_path / "none"), "--every", "6h", "--wait-first",
         "--check-every", "0.1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "every 6h" in line or time.monotonic() > deadline, line
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "SIGTERM: stopping" in out and "stopped after 0 run(s)" in out


def test_gate_window_starts_after_the_champions_data(shop: dict[str, Path],
                                                     tmp_path: Path) -> None:
    from pipelines.retrain import export_store, gate_window
    from recsys.data.validate import load_dataset

    data = merge_data(shop["original"], export_store(str(shop["store"]), tmp_path / "x"),
                      tmp_path / "data")
    ts = load_dataset(data).events[C.TIMESTAMP]
    t0 = ts.min()
    default, why = gate_window(data, None)
    assert "latest 15%" in why and (ts >= default).mean() == pytest.approx(0.15, abs=0.01)
    early, why = gate_window(data, (t0 + pd.Timedelta(days=6)).to_pydatetime())
    assert early == default and "scored as it is" in why
    end = t0 + pd.Timedelta(days=27)           # the champion saw most of the default window
    late, why = gate_window(data, end.to_pydatetime())
    newer = ts[ts >= end]
    assert late > end and "later half" in why
    assert (newer >= late).mean() == pytest.approx(0.5, abs=0.02)
    last, why = gate_window(data, (ts.max() - pd.Timedelta(minutes=1)).to_pydatetime())
    assert last == default and "both sides refitted" in why


def test_new_catalog_rows_bring_their_events_in(shop: dict[str, Path], tmp_path: Path) -> None:
    """Events for an item launched after the original data are dropped without its catalog
    row (validation), and kept with ``--items``."""
    from recsys.data.validate import load_dataset

    items = load_dataset(shop["original"]).items
    launched = pd.DataFrame({C.ITEM_ID: ["new-1"], C.TITLE: ["Solar lantern"],
                             C.CATEGORY: ["outdoor-lights"], C.PRICE: [19.0]})
    launched.to_csv(tmp_path / "items.csv", index=False)
    t = pd.Timestamp("2026-01-10T10:00:00Z")
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame({C.USER_ID: ["a", "b"], C.ITEM_ID: ["new-1", str(items[C.ITEM_ID].iloc[0])],
                  C.TIMESTAMP: [t, t], C.EVENT_TYPE: ["purchase", "view"]}
                 ).to_parquet(export / "events.parquet")
    without = load_dataset(merge_data(shop["original"], export, tmp_path / "a")).events
    assert "new-1" not in set(without[C.ITEM_ID].astype(str))
    merged = load_dataset(merge_data(shop["original"], export, tmp_path / "b",
                                     tmp_path / "items.csv"))
    assert "new-1" in set(merged.events[C.ITEM_ID].astype(str))
    row = merged.items[merged.items[C.ITEM_ID].astype(str) == "new-1"]
    assert row[C.CATEGORY].astype(str).tolist() == ["outdoor-lights"]
    assert len(merged.items) == len(items) + 1


def test_catalog_api_changes_in_the_store_join_the_data(shop: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Items launched or edited through the catalog API are in the store's control log: the
    retrain reads them from there (no --items), so a launched item's events are kept."""
    import shutil

    from pipelines.retrain import export_store, store_catalog
    from recsys.data.validate import load_dataset
    from serving.catalog import record_changes
    from serving.event_store import open_store

    store = tmp_path / "events.db"
    shutil.copy(shop["store"], store)
    original = load_dataset(shop["original"]).items
    old, old_title = str(original[C.ITEM_ID].iloc[0]), str(original[C.TITLE].iloc[0])
    with open_store(store) as s:
        record_changes(s, [{C.ITEM_ID: "new-1", C.TITLE: "Solar lantern",
                            C.CATEGORY: "outdoor-lights", C.PRICE: 19.0}])
        record_changes(s, [{C.ITEM_ID: old, C.PRICE: 123.0}, {C.ITEM_ID: "new-1",
                                                              C.PRICE: 21.0}])
        s.add_events([{"event_id": "launch-1", C.USER_ID: "a", C.ITEM_ID: "new-1",
                       C.EVENT_TYPE: "purchase", C.TIMESTAMP: "2026-01-30T10:00:00+00:00"}])
    changes = store_catalog(str(store))
    assert changes is not None
    merged = load_dataset(merge_data(shop["original"], export_store(str(store), tmp_path / "x"),
                                     tmp_path / "data", changes=changes))
    items = merged.items.assign(**{C.ITEM_ID: merged.items[C.ITEM_ID].astype(str)})
    items = items.set_index(C.ITEM_ID)
    assert items.loc["new-1", C.CATEGORY] == "outdoor-lights"
    assert items.loc["new-1", C.PRICE] == 21.0 and items.loc[old, C.PRICE] == 123.0
    assert items.loc[old, C.TITLE] == old_title     # a field the change left out is kept
    assert "new-1" in set(merged.events[C.ITEM_ID].astype(str))
    assert store_catalog(str(shop["store"])) is None


def test_a_trigger_about_a_replaced_champion_starts_no_run(tmp_path: Path) -> None:
    """Each worker writes the trigger on its own alert; one written during a run about the
    champion that run replaced is answered: skipped, no second run."""
    from pipelines.retrain import stale_trigger
    from tests.test_registry import fake_bundle

    registry = Registry(tmp_path / "registry")
    v1 = registry.register(fake_bundle(tmp_path, "v1"))
    v2 = registry.register(fake_bundle(tmp_path, "v2"))
    registry.promote(v1)
    why = stale_trigger(registry)
    assert why(f"2026-01-01T00:00:00+00:00 bundle {v1}: unknown_item_rate 1 > 0.05") is None
    assert why("2026-01-01T00:00:00+00:00 recsys monitor: feature_psi") is None
    trigger = tmp_path / "retrain.trigger"
    stop = threading.Event()
    reasons: list[str] = []

    def once(reason: str) -> None:
        reasons.append(reason)
        if len(reasons) == 1:       # another worker's alert while the run promotes v2
            trigger.write_text(f"2026-01-01T00:00:01+00:00 bundle {v1}: unknown_item_rate 1")
            registry.promote(v2)
        else:
            stop.set()

    trigger.write_text(f"2026-01-01T00:00:00+00:00 bundle {v1}: unknown_item_rate 1")
    thread = threading.Thread(target=run_loop, args=(once, 0.5, trigger, stop),
                              kwargs={"check_s": 0.05, "wait_first": True, "stale": why})
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert reasons[0].startswith("triggered") and reasons[1] == "scheduled"
    assert not trigger.exists()
