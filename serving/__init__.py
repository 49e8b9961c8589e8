"""The serving side: the HTTP API (``create_app``), bucketing, experiments and the event store.

``create_app`` is imported lazily so ``import serving.bucketing`` stays free of FastAPI and the
models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from serving.app import create_app

        return create_app
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
