"""``recsys gate``: evaluate a candidate bundle against the champion and pass or fail it.

Both bundles' deployed pipeline (``hybrid`` by default) are scored on the same window (the
champion's test split unless given) and the same users (the window's buyers known to both), then
the rules of ``configs/gate.toml`` are applied (:mod:`evaluation.gate`). One line per rule is
printed; the exit code is 0 when every rule passes, 1 otherwise.

Example::

    recsys gate --candidate runs/new/bundle --champion runs/prod/bundle --data runs/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evaluation.gate import GateOutcome, GateRules, check_gate
from evaluation.offline import evaluate_pipelines, subset_window
from pipelines.evaluate import WindowSpec, load_window, resolve_window, window_arg, window_events
from recsys.configfile import load_config
from recsys.data.validate import load_dataset
from recsys.errors import DataError
from recsys.recommender import HybridRecommender
from recsys.threads import set_thread_policy


def gate(candidate_dir: str | Path, champion_dir: str | Path, data_dir: str | Path, *,
         rules: GateRules | str | Path | None = None, window: WindowSpec | None = None,
         quiet: bool = False) -> GateOutcome:
    """Score both bundles on the same users and apply the gate rules (default: the built-in
    rules, which ``configs/gate.toml`` spells out)."""
    set_thread_policy("serve")
    if not isinstance(rules, GateRules):
        rules = load_config(GateRules, rules)
    champion = HybridRecommender.load(champion_dir)
    candidate = HybridRecommender.load(candidate_dir)
    assert champion.manifest is not None
    dataset = load_dataset(data_dir)
    start, end, source = resolve_window(champion.manifest, window)
    events = window_events(dataset.events, dataset.items, start, end)
    w_champion = load_window(champion, events, start, max_users=rules.max_users,
                             seed=rules.seed)
    w_candidate = load_window(candidate, events, start, users=list(w_champion.users))
    common = np.intersect1d(w_champion.users.astype(str), w_candidate.users.astype(str))
    if len(common) < 2:
        raise DataError(f"gate: {len(common)} window user(s) known to both bundles; need >= 2")
    w_champion = subset_window(w_champion, np.searchsorted(w_champion.users.astype(str), common))
    w_candidate = subset_window(w_candidate,
                                np.searchsorted(w_candidate.users.astype(str), common))
    if not quiet:
        print(f"gate: {len(common):,} users from {start} ({source}); pipeline {rules.pipeline}",
              flush=True)
    needs_serendipity = any(m.startswith("serendipity@") for m in rules.metrics())
    ks = rules.ks()
    results = [evaluate_pipelines(rec, w, (rules.pipeline,), ks, serendipity=needs_serendipity)
               [rules.pipeline] for rec, w in ((candidate, w_candidate),
                                               (champion, w_champion))]
    outcome = check_gate(results[0], results[1], rules)
    if not quiet:
        for line in outcome.lines():
            print(line)
    return outcome


def gate_command(args: argparse.Namespace) -> int:
    """CLI wrapper: ``recsys gate --candidate B1 --champion B0 --data DIR [--rules FILE]
    [--start T --end T]``; returns the exit code (0 pass, 1 fail)."""
    outcome = gate(args.candidate, args.champion, args.data, rules=args.rules,
                   window=window_arg(args.start, args.end))
    return outcome.exit_code
