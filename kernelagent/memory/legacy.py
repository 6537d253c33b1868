"""Memories kept before they moved into the session store's database: ``<home>/memory.db``
(its own SQLite file, same columns). Opening the memory store imports that file once
(ids, keys, sources, scores and times as they were) and renames it ``memory.db.imported``,
so nothing a user had is lost and nothing is read twice."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from kernelagent.memory.records import Memory

log = logging.getLogger(__name__)

LEGACY_FILE = "memory.db"
IMPORTED_SUFFIX = ".imported"


class Importer(Protocol):
    @property
    def url(self) -> str: ...

    def put_many(self, memories: list[Memory]) -> int: ...


def import_legacy_file(home: Path, backend: Importer) -> int | None:
    """Import ``<home>/memory.db`` into ``backend`` if it is there; returns how many
    memories were new (None: no file, or it could not be read, which is logged and
    leaves the file where it is for the next try)."""
    path = home / LEGACY_FILE
    if not path.is_file():
        return None
    try:
        memories = read_legacy_file(path)
        added = backend.put_many(memories)
    except (sqlite3.Error, OSError) as error:
        log.warning("kernelagent: could not import the memories in %s: %s", path, error)
        return None
    with contextlib.suppress(FileNotFoundError):  # another process imported it just now
        path.rename(path.with_name(LEGACY_FILE + IMPORTED_SUFFIX))
    log.info("kernelagent: imported %d memories from %s into %s", added, path, backend.url)
    return added


def read_legacy_file(path: Path) -> list[Memory]:
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'memories'").fetchall()
        rows = db.execute("SELECT * FROM memories").fetchall() if tables else []
    finally:
        db.close()
    memories = []
    for row in rows:
        try:
            memories.append(Memory.model_validate(dict(row)))
        except ValidationError as error:
            log.warning("kernelagent: skipped memory %s of %s: %s", row["id"], path, error)
    return memories
