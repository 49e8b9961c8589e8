"""What every event store backend shares about its tables: the stored event types, the kinds
of control records, and the error raised when a store cannot be used as it is.

Each backend keeps its own migrations (:mod:`.sqlite_schema`, :mod:`.postgres_schema`): the
tables are the same, the SQL dialects and the way a version is recorded differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from recsys import columns as C
from recsys.errors import RecsysError

IMPRESSION = "impression"
STORE_EVENT_TYPES: tuple[str, ...] = (IMPRESSION, *C.EVENT_TYPES)

# Kinds of record in the ``control`` table: instructions every replica reading the store
# applies: "reload" (serving.replicas), "catalog" (item changes, serving.catalog) and
# "champion" (a model registry's champion pointer, serving.champion). The kind column is plain
# text, so a new kind needs code, not a migration.
RELOAD = "reload"
CATALOG = "catalog"
CHAMPION = "champion"
CONTROL_KINDS: tuple[str, ...] = (RELOAD, CATALOG, CHAMPION)


class StoreError(RecsysError):
    """The store cannot be used as is (its schema is newer than this code, the server does not
    answer, a secret is missing...)."""


def in_list(values: Sequence[str]) -> str:
    """``'a', 'b'`` for an SQL ``IN (...)`` of constants (never for client input)."""
    return ", ".join(f"'{v}'" for v in values)
