"""The memory store the session layer, the CLI and the server use: one user's memories
(optionally in a project namespace) over a :class:`MemoryBackend`.

The backend is SQLite with FTS5 (``<home>/memory.db``). A PostgreSQL full-text backend
(``tsvector``) fits the same protocol once the session store has its PostgreSQL backend.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kernelagent.memory.records import (
    Memory,
    MemoryBackend,
    MemoryKind,
    MemoryQuery,
    checked_text,
    current_user,
)
from kernelagent.memory.sqlite_backend import SQLiteMemoryBackend

MEMORY_FILE = "memory.db"


class MemoryStore:
    def __init__(
        self,
        home: str | Path,
        *,
        user: str | None = None,
        project: str | None = None,
        backend: MemoryBackend | None = None,
    ) -> None:
        self.home = Path(home)
        self.user = user or current_user()
        self.project = project or None
        self.backend: MemoryBackend = backend or SQLiteMemoryBackend(self.home / MEMORY_FILE)

    def remember(self, text: str, kind: MemoryKind = "fact", **fields: Any) -> Memory:
        """Save a memory; one with the same ``key`` is replaced (same id)."""
        memory = Memory(
            text=checked_text(text),
            kind=kind,
            user=self.user,
            project=self.project or "",
            **fields,
        )
        return self.backend.put(memory)

    def get(self, memory_id: str) -> Memory:
        return self.backend.get(self.user, memory_id)

    def forget(self, memory_id: str) -> Memory:
        return self.backend.delete(self.user, memory_id)

    def list(self) -> builtins.list[Memory]:
        return self.backend.list(self.user, self.project)

    def search(
        self,
        text: str = "",
        *,
        datasets: Iterable[str] = (),
        kinds: Iterable[MemoryKind] = (),
        limit: int = 20,
    ) -> builtins.list[Memory]:
        return self.backend.search(
            MemoryQuery(
                user=self.user,
                project=self.project,
                text=text,
                datasets=list(datasets),
                kinds=list(kinds),
                limit=limit,
            )
        )

    def mark_shown(self, memories: Iterable[Memory]) -> None:
        """Memories a model was shown rank a little higher next time."""
        self.backend.bump([memory.id for memory in memories])

    def export(self) -> builtins.list[dict[str, Any]]:
        return [memory.as_json() for memory in self.list()]
