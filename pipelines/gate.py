"""``recsys gate``: backtest a candidate against the champion and pass or fail it.

Both sides are scored on the same window (the backtest's, default: the latest 15% of events)
and the same shoppers, through the same code as ``recsys evaluate``
(:mod:`evaluation.backtest`). A side is a bundle or a training config file:

* a bundle whose data ends before the window is scored as it is (it never saw the window);
* otherwise (a newer bundle, or a config) its config is fitted on the events before the
  window, as production would have fitted it then.

Then the rules of ``configs/gate.toml`` are applied to the deployed pipeline's ``for_you``
lists (:mod:`evaluation.gate`). One line per rule is printed; the exit code is 0 when every rule
passes, 1 otherwise.

Example::

    recsys gate --candidate runs/new/bundle --champion runs/prod/bundle --data runs/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.backtest import cutoffs, run_fold, score_bundle
from evaluation.gate import GateOutcome, GateRules, check_gate
from evaluation.offline import ModelResult, subset_results
from pipelines.evaluate import utc
from recsys.config import TrainConfig, load_train_config
from recsys.configfile import load_config
from recsys.data.validate import Dataset, load_dataset
from recsys.errors import ConfigError, DataError
from recsys.manifest import MANIFEST, read_manifest
from recsys.threads import set_thread_policy


def side(path: str | Path, dataset: Dataset, start: pd.Timestamp, end: pd.Timestamp | None,
         rules: GateRules) -> tuple[str, ModelResult, np.ndarray, int]:
    """How one side is scored, its result and its window's shoppers."""
    path = Path(path)
    ks = rules.ks()
    models = (rules.pipeline,)
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        seen = manifest.data.spans.get("history")
        if seen is not None and seen.end is not None and seen.end <= start:
            fold = score_bundle(path, dataset, start, end, models, ks,
                                max_users=rules.max_users, seed=rules.seed)
            return ("the bundle as it is", fold.results["for_you"][rules.pipeline],
                    fold.window.users, len(fold.rec.items))
        config = TrainConfig.model_validate(manifest.config)
        how = "its config refitted before the window"
    elif path.suffix == ".toml":
        config, how = load_train_config(str(path)), "the config fitted before the window"
    else:
        raise ConfigError(f"{path}: neither a bundle (no {MANIFEST}) nor a .toml config")
    fold = run_fold(dataset, start, end, config, models, ks, max_users=rules.max_users,
                    seed=rules.seed)
    return how, fold.results["for_you"][rules.pipeline], fold.window.users, len(fold.rec.items)


def gate(candidate: str | Path, champion: str | Path, data_dir: str | Path, *,
         rules: GateRules | str | Path | None = None, cutoff: str | None = None,
         quiet: bool = False) -> GateOutcome:
    """Score both sides on the same shoppers and apply the gate rules (default: the built-in
    rules, which ``configs/gate.toml`` spells out)."""
    if not isinstance(rules, GateRules):
        rules = load_config(GateRules, rules)
    dataset = load_dataset(data_dir)
    (start, end), = cutoffs(dataset.events, None if cutoff is None else utc(cutoff))
    how_c, cand, users_c, n_items = side(candidate, dataset, start, end, rules)
    how_h, champ, users_h, _ = side(champion, dataset, start, end, rules)
    set_thread_policy("serve")
    common = np.intersect1d(users_c.astype(str), users_h.astype(str))
    if len(common) < 2:
        raise DataError(f"gate: {len(common)} shopper(s) in both windows; need >= 2")
    cand = subset_results(cand, np.searchsorted(users_c.astype(str), common), n_items)
    champ = subset_results(champ, np.searchsorted(users_h.astype(str), common), n_items)
    if not quiet:
        print(f"gate: {len(common):,} shoppers from {start}; candidate: {how_c}; champion: "
              f"{how_h}; pipeline {rules.pipeline}", flush=True)
    outcome = check_gate(cand, champ, rules)
    if not quiet:
        for line in outcome.lines():
            print(line)
    return outcome


def gate_command(args: argparse.Namespace) -> int:
    """CLI wrapper: ``recsys gate --candidate B1 --champion B0 --data DIR [--rules FILE]
    [--cutoff T]``; returns the exit code (0 pass, 1 fail)."""
    outcome = gate(args.candidate, args.champion, args.data, rules=args.rules,
                   cutoff=args.cutoff)
    return outcome.exit_code
