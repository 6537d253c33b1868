"""What a memory is, and the protocol a memory backend implements (one does, over the
session store's SQLite or PostgreSQL database: :mod:`~kernelagent.memory.database_backend`).
A memory belongs to one user and one project namespace ("" is the user's own space,
shared by all their projects)."""

from __future__ import annotations

import builtins
import getpass
import os
import time
import uuid
from typing import Protocol, get_args

from pydantic import BaseModel, Field

from kernelagent.errors import InvalidRequestError, NotFoundError
from kernelagent.literals import MemoryKind

MEMORY_KINDS: tuple[MemoryKind, ...] = get_args(MemoryKind)
MAX_TEXT_CHARS = 4_000
"""A memory longer than this is refused: memories are notes, not outputs."""


class MemoryNotFoundError(NotFoundError):
    pass


class Memory(BaseModel):
    """One thing the agent (or the user) wants a later session to know."""

    id: str = Field(default_factory=lambda: "m" + uuid.uuid4().hex[:11])
    text: str
    kind: MemoryKind = "fact"
    user: str = ""
    project: str = ""
    session_id: str | None = None
    """Where it came from: the session ..."""
    cell_id: str | None = None
    """... and the cell (None for what the session as a whole produced)."""
    notebook: str | None = None
    dataset_sha256: str | None = None
    """The dataset it concerns, when there is one: recalled first for the same data."""
    dataset_name: str | None = None
    score: float = 1.0
    """Ranks memories of equal relevance; raised each time a memory is shown to a model."""
    key: str | None = None
    """Memories with the same key (per user and project) replace each other, e.g. one
    dataset card per sha256."""
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    def as_json(self) -> dict[str, object]:
        """The stable shape ``kernelagent memory ... --json`` and the server return."""
        return self.model_dump(mode="json")


class MemoryQuery(BaseModel):
    """What to look for: the same datasets first, then the text's full-text rank."""

    user: str
    project: str | None = None
    """None: only the user's own space; a name: that project's memories and the user's own."""
    text: str = ""
    datasets: list[str] = Field(default_factory=list)
    """sha256 of the datasets at hand."""
    kinds: list[MemoryKind] = Field(default_factory=list)
    limit: int = 20


class MemoryBackend(Protocol):
    """Storage and search of memories. Called by :class:`~kernelagent.memory.store.MemoryStore`
    only; every method is one short transaction."""

    def put(self, memory: Memory) -> Memory:
        """Insert, or replace the memory with the same key (keeping its id and created_at)."""
        ...

    def get(self, user: str, memory_id: str) -> Memory:
        """By id, or by a unique prefix of at least 4 characters; MemoryNotFoundError."""
        ...

    def delete(self, user: str, memory_id: str) -> Memory: ...

    def list(self, user: str, project: str | None = None) -> list[Memory]:
        """All of the user's memories (of one project and the user's own space if given;
        all projects if None), newest first."""
        ...

    def search(self, query: MemoryQuery) -> builtins.list[Memory]:
        """Same dataset sha256 first (newest first), then full-text rank, then score."""
        ...

    def bump(self, memory_ids: builtins.list[str], by: float = 0.1) -> None: ...


def current_user() -> str:
    """``$KERNELAGENT_USER``, else the login name."""
    return os.environ.get("KERNELAGENT_USER") or getpass.getuser()


def checked_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidRequestError("a memory needs some text", hint="say what to remember")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequestError(
            f"a memory is at most {MAX_TEXT_CHARS} characters (this one has {len(text)})",
            hint="remember the conclusion, not the output it came from",
        )
    return text
