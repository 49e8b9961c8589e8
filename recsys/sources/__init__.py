"""Candidate sources, one class per file in this package.

Every module here is imported on first use of the registry, and each source class registers
itself with :func:`register`; enabling it is one entry in the hybrid config
(``[hybrid.sources.NAME]``, see :class:`~recsys.config.HybridConfig`). From the enabled sources
follow the candidate pool's columns, two ranker features each (``NAME_score``, ``NAME_rank``),
the reasons, and one baseline pipeline each (the source alone, ranked by its own score).

Sources today: ``cf`` (ALS), ``content`` (content profile), ``i2i_cf`` / ``i2i_content``
(near the cart, current item and recent views), ``copurchase`` (bought together), ``itemknn``
(item-kNN), ``repeat`` (the user's own purchases, always in the pool), ``ppop`` (P-Pop/G-Pop),
``tifu`` (TIFU-KNN), ``popular``, ``trending``, ``seasonal``, ``popular_cat`` and
``new_arrivals``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from recsys.sources.base import Parts, Source, SourceConfig

S = TypeVar("S", bound="type[Source]")
_REGISTRY: dict[str, type[Source]] = {}
_loaded = False


def register(cls: S) -> S:
    """Class decorator: make a source available by its ``name``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two candidate sources are named {name!r}: "
                         f"{_REGISTRY[name].__qualname__} and {cls.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def registered() -> dict[str, type[Source]]:
    """Every source class, by name (imports the package's modules once)."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    return dict(_REGISTRY)


def pipeline_names() -> tuple[str, ...]:
    """``hybrid`` and every source's baseline pipelines (e.g. ``popularity``, ``als``)."""
    names = ["hybrid"]
    for cls in registered().values():
        names += [cls.pipeline_name(), *cls.extra_pipelines]
    return tuple(names)


def build_sources(names: tuple[str, ...], configs: dict[str, SourceConfig], parts: Parts
                  ) -> dict[str, Source]:
    """The sources ``names``, each from its config, over the shared ``parts`` (not fitted)."""
    registry = registered()
    return {name: registry[name](configs[name], parts) for name in names}
