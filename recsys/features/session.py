"""The moment and the session: time of day, weekday, device, closeness to the cart and to what
was just viewed, and whether the item is already in the session."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys import columns as C
from recsys.features import FeatureGroup, FeatureInput, feature_group

DEVICE_CODE = {d: i for i, d in enumerate(C.DEVICES)}


def _similarity(cand: np.ndarray, vectors: np.ndarray, ids: np.ndarray
                ) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Max and mean cosine of each candidate with the ``ids`` items (NaN without any)."""
    if len(ids) == 0:
        return np.nan, np.nan
    sims = cand @ vectors[ids].T
    return sims.max(axis=1), sims.mean(axis=1)


def _member(ids: np.ndarray, few: np.ndarray) -> np.ndarray:
    """1.0 where ``ids`` is in ``few`` (a cart, recent views: at most a few dozen ids); a
    broadcast comparison, ~10x cheaper than ``np.isin`` at these sizes."""
    if len(few) == 0:
        return np.zeros(len(ids), np.float32)
    return (ids[:, None] == few[None, :]).any(axis=1).astype(np.float32)


@feature_group
class SessionContext(FeatureGroup):
    features = ("hour", "dow", "device", "sim_cart_max", "sim_cart_mean", "sim_views_max",
                "sim_views_mean", "in_session_views", "in_cart")
    phrases = {"sim_cart_max": "goes with what is in your cart",
               "sim_views_max": "close to what you just viewed",
               "in_session_views": "you looked at it in this session",
               "hour": "fits what shoppers buy at this time of day",
               "device": "popular on your device"}
    zero_means_absent = frozenset({"in_session_views"})

    def compute(self, x: FeatureInput) -> Mapping[str, np.ndarray | float]:
        ctx = x.ctx
        hour = dow = np.nan
        if ctx.now is not None:   # UTC hour and weekday (Monday = 0; 1970-01-01 a Thursday)
            hour, dow = float((ctx.now // 3600) % 24), float((ctx.now // 86400 + 3) % 7)
        cand, vectors = x.candidate_vectors, x.embeddings
        cart_max, cart_mean = _similarity(cand, vectors, ctx.cart)
        viewed = np.concatenate([ctx.views, ctx.current])
        view_max, view_mean = _similarity(cand, vectors, viewed)
        return {"hour": hour, "dow": dow, "device": DEVICE_CODE.get(ctx.device or "", np.nan),
                "sim_cart_max": cart_max, "sim_cart_mean": cart_mean,
                "sim_views_max": view_max, "sim_views_mean": view_mean,
                "in_session_views": _member(x.ids, viewed), "in_cart": _member(x.ids, ctx.cart)}
