"""Arguments of the heavier commands, kept apart so ``recsys --help`` imports no models."""

from __future__ import annotations

import argparse


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """The ``recsys evaluate`` arguments (for the CLI to call on its sub-parser)."""
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--bundle", required=True, help="bundle directory (recsys train --out)")
    p.add_argument("--report", required=True, help="output directory for report.html, "
                   "metrics.json and summary.md")
    p.add_argument("--baselines", default="popularity,als,content",
                   help="comma-separated baseline pipelines (default: popularity,als,content)")
    p.add_argument("--k", default="5,10,20",
                   help="comma-separated cut-offs (default: 5,10,20)")
    p.add_argument("--max-users", type=int, default=None,
                   help="sample at most N window buyers (seeded)")
    p.add_argument("--against", default="popularity",
                   help="reference model of the paired tests (default: popularity; 'none')")
    p.add_argument("--start", default=None,
                   help="window start, ISO time (default: the bundle's test split start)")
    p.add_argument("--end", default=None, help="window end, ISO time, exclusive")
    p.add_argument("--seed", type=int, default=0, help="user sampling and bootstrap seed")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--open-bandit", default=None,
                   help="Open Bandit sample for the off-policy section (default: "
                   "../shared/datasets/open_bandit)")
    p.add_argument("--progress", action="store_true", help="show per-model progress bars")


def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    """The ``recsys gate`` arguments (for the CLI to call on its sub-parser)."""
    p.add_argument("--candidate", required=True, help="bundle to deploy")
    p.add_argument("--champion", required=True, help="bundle in production")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--rules", default=None,
                   help="gate rules TOML (default: built-in rules = configs/gate.toml)")
    p.add_argument("--start", default=None,
                   help="window start, ISO time (default: the champion's test split start)")
    p.add_argument("--end", default=None, help="window end, ISO time, exclusive")
