"""Importers: turn public data formats into the canonical ``events`` + ``items`` frames.

Each importer is one function returning an :class:`ImportResult`:

* :func:`recsys.data.importers.online_retail.import_online_retail` (UCI Online Retail CSV),
* :func:`recsys.data.importers.movielens.import_movielens` (MovieLens 100K directory),
* :func:`recsys.data.importers.mapped.import_mapped` (any CSV/Parquet log plus a TOML mapping).

The importer does all the cleaning itself and counts every removed row, by rule, in
``notes``; its output then passes :func:`~recsys.data.validate.validate_events` with nothing
dropped, so validation never hides a cleaning decision. ``docs/importers.md`` documents the
rules and the figures they give on the real files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsys.data.io import write_dataset
from recsys.data.validate import validate_events, validate_items
from recsys.errors import DataError

Note = int | float | str

REPORT_NAME = "import_report.json"


@dataclass(frozen=True)
class ImportResult:
    """Canonical (validated) events and items, plus what the import removed and measured.

    ``notes`` maps a rule or figure name to a plain JSON value, e.g.
    ``{"removed_cancellation": 9288, "events": 386393, "revenue_gbp": 8.7e6}``.
    """

    events: pd.DataFrame
    items: pd.DataFrame
    notes: dict[str, Note] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """Write ``events.parquet``, ``items.parquet`` and ``import_report.json``; returns the dir.

        Example::

            import_online_retail("online_retail.csv.gz").save("data/online_retail")
        """
        directory = write_dataset(directory, self.events, self.items)
        (directory / REPORT_NAME).write_text(json.dumps(self.notes, indent=2) + "\n")
        return directory


def finish(events: pd.DataFrame, items: pd.DataFrame, notes: dict[str, Note],
           source: str) -> ImportResult:
    """Validate the importer's output and wrap it in an :class:`ImportResult`.

    Validation here is a gate, not a cleaner: the importer must already have removed (and
    counted) every row validation would drop, so any drop is reported as an error instead of
    silently changing the figures in ``notes``.
    """
    valid_items = validate_items(items, source=f"{source} (items)")
    valid_events, report = validate_events(events, valid_items, source=f"{source} (events)")
    if report.dropped:
        raise DataError(f"{source}: the import left rows that validation drops: {report.dropped}")
    clean = {key: _plain(value) for key, value in notes.items()}
    return ImportResult(valid_events, valid_items, clean)


def _plain(value: object) -> Note:
    """numpy scalars -> Python scalars, so ``notes`` serialises to JSON as is."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        plain = item()
        if isinstance(plain, int | float | str):
            return plain
    return str(value)
