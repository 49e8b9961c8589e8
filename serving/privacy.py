"""Erasing a user from the in-memory models, and keeping every loaded bundle erased.

``DELETE /v1/users/{id}`` erases the user's events and exposures in the store, and those of the
sessions they used, and writes an audit record holding a keyed hash of the id (never the id;
:mod:`serving.audit`). What a loaded bundle keeps per user:

* the history index (events the recommender reads per request): dropped;
* the ALS user factor, if the user was in training: dropped. The factor is all that is left of
  the user's events in the model; the item factors, the co-purchase counts and the popularity
  statistics are aggregates over all users and are left as they are until the next retrain.
  The user is then unknown (``fallback: true``), and no reason claims to know their tastes.

Changes are copy-on-write: the history is copied, the user dropped from the copy, and the copy
swapped in with one attribute assignment, so a request running meanwhile sees either the old or
the new index, never a half-edited one.

The audit log is the source of truth for erasures, so they also reach bundles loaded later
(``POST /v1/admin/reload`` or a restart with a bundle trained before the erasure) and the other
uvicorn workers and replicas sharing the store: every bundle remembers the last audit record
applied to it, and :meth:`ErasureTracker.apply` applies the records after it (every process
polls the log). A newly
loaded bundle applies the whole log, so an erased id stays erased in memory even if the same id
comes back with new events; the store's new events of that user are unaffected.
"""

from __future__ import annotations

from recsys.recommender import Forgotten, HybridRecommender
from serving.audit import LEGACY_PREFIX, legacy_subject
from serving.event_store import EventStore

DELETE_USER = "delete_user"


Erased = Forgotten


def erase_user(rec: HybridRecommender, user_id: str) -> Erased:
    """Make ``rec`` forget ``user_id`` (history and model vectors; see
    :meth:`~recsys.recommender.HybridRecommender.forget_user`)."""
    return rec.forget_user(user_id)


class ErasureTracker:
    """The erasures applied to one loaded bundle: the last audit record id, and (built on first
    need) the map from audit subject (hashed id) to the bundle's user ids."""

    def __init__(self) -> None:
        self.last_audit_id = 0
        self._subjects: dict[str, str] | None = None

    def _subject_map(self, rec: HybridRecommender, store: EventStore, legacy: bool
                     ) -> dict[str, str]:
        if self._subjects is None:
            users = set(map(str, rec.history.users.external_ids))
            users.update(map(str, rec.users.external_ids))
            # ~0.3 s per 100k users; only paid once erasures exist
            self._subjects = {store.audit_subject(u): u for u in users}
            if legacy:   # records written before the keyed hash (serving.audit)
                self._subjects.update({legacy_subject(u): u for u in users})
        return self._subjects

    def apply(self, rec: HybridRecommender, store: EventStore) -> dict[str, Erased]:
        """Apply the store's erasure records newer than the last one applied; returns the
        users erased here (user id -> what was removed)."""
        new = store.audit_log(after_id=self.last_audit_id)
        done: dict[str, Erased] = {}
        records = [r for r in new if r["action"] == DELETE_USER]
        if records:
            legacy = any(r["subject"].startswith(LEGACY_PREFIX) for r in records)
            subjects = self._subject_map(rec, store, legacy)
            for record in records:
                user = subjects.get(record["subject"])
                if user is not None:
                    done[user] = erase_user(rec, user)
        if new:
            self.last_audit_id = max(r["id"] for r in new)
        return done
