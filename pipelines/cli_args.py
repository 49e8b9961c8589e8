"""Arguments of the heavier commands, kept apart so ``recsys --help`` imports no models."""

from __future__ import annotations

import argparse


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """The ``recsys evaluate`` arguments (for the CLI to call on its sub-parser)."""
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--report", required=True, help="output directory for report.html, "
                   "metrics.json and summary.md")
    p.add_argument("--cutoff", default=None,
                   help="fit before this time, recommend at it, score after it (ISO time; "
                   "default: the 85%% quantile of event time)")
    p.add_argument("--folds", type=int, default=1,
                   help="rolling cutoffs, each scoring the next 15%% of events (default 1)")
    p.add_argument("--config", default=None,
                   help="training config TOML (default: the built-in defaults)")
    p.add_argument("--baselines", default=None,
                   help="comma-separated baseline pipelines (default: buy_again_pop, ppop, "
                   "tifu, itemknn, als, popularity, content)")
    p.add_argument("--k", default="5,10,20",
                   help="comma-separated cut-offs (default: 5,10,20)")
    p.add_argument("--max-users", type=int, default=None,
                   help="sample at most N shoppers per fold (seeded)")
    p.add_argument("--seed", type=int, default=0, help="user sampling and bootstrap seed")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--open-bandit", default=None,
                   help="Open Bandit sample for the off-policy section (default: "
                   "../shared/datasets/open_bandit)")
    add_batch_arguments(p)


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--quiet`` and ``--progress``, for the commands that score many
    shoppers (``recommend``, ``evaluate``)."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes scoring shoppers in parallel, one thread each "
                   "(default: every core; 1 scores in this process)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress line on stderr (and no summary)")
    p.add_argument("--progress", action="store_true",
                   help="the progress line (shoppers done / total, rate, ETA) also when "
                   "stderr is not a terminal: a line every 10 s (default: only on a terminal)")


def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    """The ``recsys gate`` arguments (for the CLI to call on its sub-parser)."""
    p.add_argument("--candidate", required=True,
                   help="bundle (or training config .toml) to deploy")
    p.add_argument("--champion", required=True, help="bundle (or config) in production")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--rules", default=None,
                   help="gate rules TOML (default: built-in rules = configs/gate.toml)")
    p.add_argument("--cutoff", default=None,
                   help="the backtest's cutoff, ISO time (default: the 85%% quantile of event "
                   "time)")
