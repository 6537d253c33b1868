"""The memory store the session layer, the CLI and the server use: one user's memories
(optionally in a project namespace) over a :class:`MemoryBackend`.

:func:`open_memory_store` is the one place that opens it: the memories live in the
session store's database (``$KERNELAGENT_STORE_URL`` or ``--store``; by default SQLite
``<home>/sessions.db``), SQLite FTS5 or PostgreSQL full-text search.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kernelagent.database.backend import open_backend, store_url
from kernelagent.memory.database_backend import DatabaseMemoryBackend
from kernelagent.memory.legacy import import_legacy_file
from kernelagent.memory.records import (
    Memory,
    MemoryBackend,
    MemoryKind,
    MemoryQuery,
    checked_text,
    current_user,
)

_shared: dict[str, DatabaseMemoryBackend] = {}
_shared_lock = threading.Lock()


def open_memory_store(
    home: str | Path,
    url: str | None = None,
    *,
    user: str | None = None,
    project: str | None = None,
) -> MemoryStore:
    """The memories of ``user`` (default :func:`~kernelagent.memory.records.current_user`)
    in the session store's database: ``url``, else ``$KERNELAGENT_STORE_URL``, else SQLite
    ``<home>/sessions.db``. A ``<home>/memory.db`` of older versions is imported first.
    Raises :class:`~kernelagent.database.backend.StoreUnavailableError` (with a hint) when
    the database cannot be reached."""
    home = Path(home)
    return MemoryStore(memory_backend(home, store_url(home, url)), user=user, project=project)


def memory_backend(home: Path, url: str) -> DatabaseMemoryBackend:
    """The backend for ``url``: a PostgreSQL one is kept per process (its connection is
    reused); SQLite opens the file per unit of work anyway."""
    with _shared_lock:
        backend = _shared.get(url)
        if backend is None:
            backend = DatabaseMemoryBackend(open_backend(url))
            if backend.database.dialect == "postgresql":
                _shared[url] = backend
    import_legacy_file(home, backend)
    return backend


class MemoryStore:
    def __init__(
        self,
        backend: MemoryBackend,
        *,
        user: str | None = None,
        project: str | None = None,
    ) -> None:
        self.backend = backend
        self.user = user or current_user()
        self.project = project or None

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
