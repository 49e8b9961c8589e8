"""Request limits from the settings, checked after schema validation.

The limits are per deployment (``[limits]`` in the serving config), so they cannot be constants
in the pydantic schemas. The checks return errors in FastAPI's own 422 format
(``{"type", "loc", "msg", "input"}``) so a client sees one error shape whatever the cause; the
route handler raises them as a ``RequestValidationError``.
"""

from __future__ import annotations

from typing import Any

from serving.schemas import RecommendationRequest
from serving.settings import Limits

ErrorDict = dict[str, Any]


def _too_long(loc: tuple[str, ...], n: int, limit: int) -> ErrorDict:
    return {"type": "too_long", "loc": ("body", *loc), "input": f"{n} values",
            "msg": f"List should have at most {limit} items, not {n}",
            "ctx": {"max_length": limit, "actual_length": n}}


def recommendation_errors(body: RecommendationRequest, limits: Limits) -> list[ErrorDict]:
    """Everything in ``body`` over the limits (empty when it is fine)."""
    errors: list[ErrorDict] = []
    if body.k > limits.max_k:
        errors.append({"type": "less_than_equal", "loc": ("body", "k"), "input": body.k,
                       "msg": f"Input should be less than or equal to {limits.max_k}",
                       "ctx": {"le": limits.max_k}})
    for loc, values, limit in (
            (("context", "cart"), body.context.cart, limits.max_cart),
            (("context", "recent_views"), body.context.recent_views, limits.max_recent_views),
            (("filters", "categories"), body.filters.categories, limits.max_filter_values),
            (("filters", "exclude_items"), body.filters.exclude_items,
             limits.max_filter_values)):
        if len(values) > limit:
            errors.append(_too_long(loc, len(values), limit))
    return errors


def k_errors(k: int, limits: Limits) -> list[ErrorDict]:
    """The ``k`` query parameter of the similar-items endpoint."""
    if 1 <= k <= limits.max_k:
        return []
    return [{"type": "less_than_equal" if k > 1 else "greater_than_equal", "loc": ("query", "k"),
             "input": k, "msg": f"Input should be between 1 and {limits.max_k}",
             "ctx": {"ge": 1, "le": limits.max_k}}]


def batch_errors(n: int, limits: Limits) -> list[ErrorDict]:
    """The number of events in one ``POST /v1/events``."""
    return [] if n <= limits.max_batch else [_too_long(("events",), n, limits.max_batch)]
