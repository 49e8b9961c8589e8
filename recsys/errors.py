"""The few domain errors the library raises. The CLI turns them into one-line messages and the
API into 4xx responses; anything else is a bug."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class: an error whose message is meant for the user, not a traceback."""


class DataError(RecsysError):
    """Input data breaks the canonical contract (missing column, bad value, empty file...)."""


class ConfigError(RecsysError):
    """A configuration file or value is invalid (unknown key, out-of-range value...)."""


class NotFittedError(RecsysError):
    """A model was used before ``fit`` (or ``load``)."""


class BundleError(RecsysError):
    """A saved bundle is missing, corrupted, or of an unsupported schema version."""
