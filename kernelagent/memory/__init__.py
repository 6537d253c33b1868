"""Memory: what the agent learns in one session, recalled in the next.

:mod:`records` (what a memory is, the backend protocol), :mod:`schema` and
:mod:`database_backend` (memories in the session store's database: SQLite FTS5 or
PostgreSQL full-text), :mod:`legacy` (the ``memory.db`` of older versions), :mod:`store`
(one user's memories, :func:`~store.open_memory_store`), :mod:`prompt` (recall into the system
prompt), :mod:`cards` (dataset cards and findings from a recorded session),
:mod:`toolbox` (what the model's remember/recall tools do).
"""

from kernelagent.memory.records import (
    MEMORY_KINDS,
    Memory,
    MemoryBackend,
    MemoryKind,
    MemoryNotFoundError,
    MemoryQuery,
)
from kernelagent.memory.store import MemoryStore, open_memory_store

__all__ = [
    "MEMORY_KINDS",
    "Memory",
    "MemoryBackend",
    "MemoryKind",
    "MemoryNotFoundError",
    "MemoryQuery",
    "MemoryStore",
    "open_memory_store",
]
