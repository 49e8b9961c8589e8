"""Load a TOML config file into a pydantic model, rejecting unknown keys.

Config models live next to the code they configure and set ``extra="forbid"``; this module only
turns files and pydantic errors into one-line :class:`~recsys.errors.ConfigError` messages.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from recsys.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: frozen, and an unknown key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe(exc: ValidationError, source: str) -> str:
    """One line naming each bad key path, its value and what was expected."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        else:
            parts.append(f"'{where}' = {err.get('input')!r}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


def parse_config(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    """Validate a dict against ``model``; errors become a ConfigError naming the keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source)) from None


def load_config(model: type[M], path: str | Path | None) -> M:
    """Load ``path`` (TOML) into ``model``; ``None`` gives the model's defaults."""
    if path is None:
        return model()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(model, data, str(path))
