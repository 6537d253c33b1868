"""Memory: what the agent learns in one session, recalled in the next.

:mod:`records` (what a memory is, the backend protocol), :mod:`sqlite_backend` (SQLite +
FTS5), :mod:`store` (one user's memories), :mod:`prompt` (recall into the system
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
from kernelagent.memory.store import MEMORY_FILE, MemoryStore

__all__ = [
    "MEMORY_FILE",
    "MEMORY_KINDS",
    "Memory",
    "MemoryBackend",
    "MemoryKind",
    "MemoryNotFoundError",
    "MemoryQuery",
    "MemoryStore",
]
