"""Data steps as functions the CLI and the demo share."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data.validate import Dataset, load_dataset

VALIDATION_REPORT = "validation.json"


def validate_dir(directory: str | Path, *, report_path: str | Path | None = None,
                 now: pd.Timestamp | None = None) -> Dataset:
    """Validate a dataset directory and save the drop report next to it (or at report_path)."""
    dataset = load_dataset(directory, now=now)
    dataset.report.save(report_path or Path(directory) / VALIDATION_REPORT)
    return dataset


def print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)
