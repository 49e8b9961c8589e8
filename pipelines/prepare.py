"""Data steps as functions the CLI and the demo share: validate, split, import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.split import SplitConfig, save_summary, summarize, summary_lines, time_split
from recsys.data.validate import Dataset, load_dataset

VALIDATION_REPORT = "validation.json"
SPLIT_SUMMARY = "split.json"


@dataclass(frozen=True)
class Prepared:
    dataset: Dataset
    split_summary: dict[str, Any]


def validate_dir(directory: str | Path, *, report_path: str | Path | None = None,
                 now: pd.Timestamp | None = None) -> Dataset:
    """Validate a dataset directory and save the drop report next to it (or at report_path)."""
    dataset = load_dataset(directory, now=now)
    dataset.report.save(report_path or Path(directory) / VALIDATION_REPORT)
    return dataset


def split_dir(directory: str | Path, config: SplitConfig | None = None, *,
              summary_path: str | Path | None = None,
              dataset: Dataset | None = None) -> dict[str, Any]:
    """Split a (validated) dataset by time and save the per-part summary as JSON."""
    dataset = dataset or load_dataset(directory)
    summary = summarize(time_split(dataset.events, config))
    save_summary(summary, summary_path or Path(directory) / SPLIT_SUMMARY)
    return summary


def print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)


def report_dataset(dataset: Dataset, summary: dict[str, Any] | None = None) -> None:
    print_lines(dataset.report.lines())
    if summary is not None:
        print_lines(summary_lines(summary))
