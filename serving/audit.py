"""Who an erasure record names: a keyed hash of the user id, never the id.

The audit log must answer "was user X erased, and when?" without keeping X. A plain SHA-256 of
the id does not do that: ids are short and guessable (``u000042``), so hashing every candidate
reverses a record in milliseconds. The subject is therefore ``HMAC-SHA256(secret, user id)``:
without the server secret it cannot be recomputed, with it the server can still match records
to ids (to apply an erasure to a bundle loaded later).

The secret comes from the environment variable named by ``privacy.audit_secret_env`` (default
``RECSYS_AUDIT_SECRET``). Without one, a random secret is created once in ``<event store>.secret``
beside the database (mode 0600), so every worker and every restart shares it; keep that file
with the store (losing it only means old records can no longer be matched to ids: erasures
already applied stay applied in the store, but a bundle trained before them and loaded later
would not drop those users again).

Records written before this scheme hold ``user:sha256:<hex>``; they are still matched, so an
upgrade loses no erasure.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from serving.event_store.schema import StoreError

SUBJECT_PREFIX = "user:hmac-sha256:"
LEGACY_PREFIX = "user:sha256:"


def audit_subject(user_id: str, secret: str) -> str:
    """The subject of ``user_id``'s erasure record under ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), user_id.encode("utf-8", "surrogatepass"),
                      hashlib.sha256).hexdigest()
    return SUBJECT_PREFIX + digest


def legacy_subject(user_id: str) -> str:
    """The unkeyed subject of records written before the HMAC (matching only)."""
    return LEGACY_PREFIX + hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def secret_file(store_path: str | Path) -> Path:
    path = Path(store_path)
    return path.with_name(path.name + ".secret")


def load_or_create_secret(store_path: str | Path) -> str:
    """The secret in ``<store>.secret``, created (random, mode 0600) if it does not exist yet.
    Safe when several workers start at once: one creates it, the others read it."""
    path = secret_file(store_path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):   # another worker may be writing it right now
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise StoreError(f"{path} is empty: delete it, or set the audit secret") from None
    with os.fdopen(fd, "w") as fh:
        value = secrets.token_hex(32)
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return value
