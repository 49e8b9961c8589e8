"""Live shopper state: the events stored since the bundle was trained, per user and per session,
so the next request knows what the shopper just did.

Every worker keeps a :class:`LiveState`, filled by :class:`serving.live_sync.LiveSync` from the
store (the events any worker or replica accepted). A request then reads it:

* the user's (or, anonymous, the session's) live events join the bundle's history through the
  recommender's ``history=`` hook (:func:`live_history`): a purchase counts for ``buy_again``
  and for every rule that reads purchases (``discover`` and, unless its category repeats,
  ``for_you`` leave the item out);
* views, clicks and add-to-carts of the current session become the request's context
  (:func:`live_context`) when the request sends none: a shop may call with only ``user_id`` or
  ``session_id``. A context field the request sends wins.

Memory is bounded: at most ``max_shoppers`` users and ``max_sessions`` sessions, the least
recently used (updated or read) dropped first, each with its newest ``max_events`` events.
Item ids stay external, so the state outlives reloads and catalog changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from recsys import columns as C
from recsys.history import TYPE_CODE, UserEvents
from recsys.recommender import HybridRecommender

VIEW, CLICK = TYPE_CODE[C.VIEW], TYPE_CODE[C.CLICK]
ADD_TO_CART, PURCHASE = TYPE_CODE[C.ADD_TO_CART], TYPE_CODE[C.PURCHASE]


class LiveEvent(NamedTuple):
    """One event of the live state (external item id; ``time`` in epoch seconds)."""

    event_id: str
    item_id: str
    type: int               # recsys.history.TYPE_CODE
    time: int
    quantity: int
    price: float            # NaN when unknown


@dataclass
class Track:
    """The newest events of one user or session, oldest first; for a user, the sessions their
    events named (an erasure drops those too)."""

    events: deque[LiveEvent]
    ids: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)

    def add(self, event: LiveEvent) -> bool:
        if event.event_id in self.ids:
            return False
        if len(self.events) == self.events.maxlen:
            self.ids.discard(self.events[0].event_id)
        self.events.append(event)
        self.ids.add(event.event_id)
        return True


class LiveState:
    """Users' and sessions' live events, LRU-bounded; thread-safe (one poller writes, request
    threads read).

    >>> s = LiveState(max_shoppers=2, max_sessions=2, max_events=10)
    >>> s.add("u1", None, LiveEvent("e1", "i9", PURCHASE, 1_700_000_000, 1, 9.5))
    True
    >>> [e.item_id for e in s.user_events("u1")]
    ['i9']
    """

    def __init__(self, *, max_shoppers: int, max_sessions: int, max_events: int) -> None:
        self.max_shoppers, self.max_sessions, self.max_events = (max_shoppers, max_sessions,
                                                                 max_events)
        self._users: OrderedDict[str, Track] = OrderedDict()
        self._sessions: OrderedDict[str, Track] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._users) + len(self._sessions)

    @property
    def shoppers(self) -> int:
        return len(self._users)

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def _track(self, table: OrderedDict[str, Track], key: str, bound: int) -> Track:
        track = table.get(key)
        if track is None:
            track = table[key] = Track(deque(maxlen=self.max_events))
            while len(table) > bound:
                table.popitem(last=False)     # the least recently used
        else:
            table.move_to_end(key)
        return track

    def add(self, user_id: str | None, session_id: str | None, event: LiveEvent) -> bool:
        """Record one event of a user and/or session; False if its id was already there."""
        added = False
        with self._lock:
            if user_id is not None:
                track = self._track(self._users, user_id, self.max_shoppers)
                added |= track.add(event)
                if session_id is not None:
                    track.sessions.add(session_id)
            if session_id is not None:
                added |= self._track(self._sessions, session_id, self.max_sessions).add(event)
        return added

    def _read(self, table: OrderedDict[str, Track], key: str | None) -> tuple[LiveEvent, ...]:
        if key is None:
            return ()
        with self._lock:
            track = table.get(key)
            if track is None:
                return ()
            table.move_to_end(key)
            return tuple(track.events)

    def user_events(self, user_id: str | None) -> tuple[LiveEvent, ...]:
        return self._read(self._users, user_id)

    def session_events(self, session_id: str | None) -> tuple[LiveEvent, ...]:
        return self._read(self._sessions, session_id)

    def users(self) -> list[str]:
        with self._lock:
            return list(self._users)

    def forget_user(self, user_id: str) -> bool:
        """Drop the user and the sessions their events named (erasure); True if there was any."""
        with self._lock:
            track = self._users.pop(user_id, None)
            if track is None:
                return False
            for session in track.sessions:
                self._sessions.pop(session, None)
            return True

    def clear(self) -> None:
        with self._lock:
            self._users.clear()
            self._sessions.clear()


def request_events(live: LiveState, user_id: str | None, session_id: str | None
                   ) -> tuple[tuple[LiveEvent, ...], tuple[LiveEvent, ...]]:
    """(events for the history, the session's events): the user's events plus the session's
    not already among them (without a user, the session's), and the session's own."""
    mine = live.user_events(user_id)
    session = live.session_events(session_id)
    if not session:
        return mine, ()
    if not mine:
        return session, session
    seen = {e.event_id for e in mine}
    merged = tuple(sorted((*mine, *(e for e in session if e.event_id not in seen)),
                          key=lambda e: e.time))
    return merged, session


def live_history(rec: HybridRecommender, user_id: str | None, events: Iterable[LiveEvent],
                 before: int | None) -> UserEvents | None:
    """The bundle's history of ``user_id`` with the live events after its last one (those
    already in the bundle are not counted twice) and before ``before``; items the catalog does
    not know are skipped. None when no live event adds anything (the recommender then reads
    its own history)."""
    base = rec.history.slice(user_id, before=before)
    last = int(base.times[-1]) if len(base) else None
    fresh = [e for e in events if (last is None or e.time > last)
             and (before is None or e.time < before)]
    if not fresh:
        return None
    internal = rec.items.to_internal([e.item_id for e in fresh], missing="minus_one")
    keep = internal >= 0
    if not keep.any():
        return None
    kept = [e for e, k in zip(fresh, keep, strict=True) if k]
    return UserEvents(
        np.concatenate([base.items, internal[keep].astype(np.int32)]),
        np.concatenate([base.types, np.array([e.type for e in kept], np.int8)]),
        np.concatenate([base.times, np.array([e.time for e in kept], np.int64)]),
        np.concatenate([base.quantity, np.array([e.quantity for e in kept], np.int32)]),
        np.concatenate([base.price, np.array([e.price for e in kept], np.float32)]))


@dataclass(frozen=True)
class SessionContext:
    cart: tuple[str, ...]
    recent_views: tuple[str, ...]


def live_context(events: Iterable[LiveEvent], *, since: int | None, before: int | None,
                 max_cart: int, max_views: int) -> SessionContext:
    """The cart (added, not bought since) and the recent views (viewed or clicked, oldest
    first, each once) of a session's events at or after ``since`` and before ``before``."""
    cart: dict[str, None] = {}
    views: dict[str, None] = {}
    for e in events:
        if (since is not None and e.time < since) or (before is not None and e.time >= before):
            continue
        if e.type == ADD_TO_CART:
            cart[e.item_id] = None
        elif e.type == PURCHASE:
            cart.pop(e.item_id, None)
        elif e.type in (VIEW, CLICK):
            views.pop(e.item_id, None)      # re-viewed: it moves to the end
            views[e.item_id] = None
    return SessionContext(tuple(cart)[-max_cart:] if max_cart else (),
                          tuple(views)[-max_views:] if max_views else ())
