"""``recsys monitor`` (being written)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True)


def monitor_command(args: argparse.Namespace) -> int:
    return 0
