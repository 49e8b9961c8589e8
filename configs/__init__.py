"""The shipped configuration files, one per pipeline or service, as package data.

A checkout reads them as ``configs/serving.toml`` and so on (the paths in the README); an
installed wheel carries the same files in this package, so ``recsys demo`` runs anywhere.
There is one copy of each file: nothing to keep in sync.

>>> config_path("serving.toml").name
'serving.toml'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_path(name: str) -> Path:
    """The path of the shipped config ``name`` (e.g. ``"serving.toml"``,
    ``"mappings/retailrocket.toml"``)."""
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {name!r} in {path.parent}")
    return path
