"""The session store: the index of sessions (SQLite or PostgreSQL) and their directories.

``SessionStore()`` opens the store ``$KERNELAGENT_STORE_URL`` names (default: SQLite at
``<KERNELAGENT_HOME>/sessions.db``). The parts:

* :mod:`.records` what a session's row holds and which status may follow which;
* :mod:`.index` :class:`SessionStore`, the one interface the rest of kernelagent uses,
  on a database of :mod:`kernelagent.database` (a URL, a transaction, schema versions).
"""

from kernelagent.database.backend import StoreBackend, StoreUnavailableError, Transaction
from kernelagent.session.store.index import SessionStore
from kernelagent.session.store.records import (
    DEFAULT_IDLE_SECONDS,
    TRANSITIONS,
    WAITING,
    SessionNotFoundError,
    SessionRecord,
    SessionStateError,
    default_home,
)

__all__ = [
    "DEFAULT_IDLE_SECONDS",
    "TRANSITIONS",
    "WAITING",
    "SessionNotFoundError",
    "SessionRecord",
    "SessionStateError",
    "SessionStore",
    "StoreBackend",
    "StoreUnavailableError",
    "Transaction",
    "default_home",
]
