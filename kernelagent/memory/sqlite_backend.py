"""Memories in SQLite with an FTS5 index: ``<home>/memory.db``, next to the session index.

A file of its own rather than tables in ``sessions.db``: the session index is written
(fully synced) on every status and usage event and is being moved behind a store
interface with a PostgreSQL backend; memory keeps its own schema, lock and lifetime
(delete the file and every memory is forgotten, the sessions stay).
"""

from __future__ import annotations

import builtins
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kernelagent.memory.records import Memory, MemoryNotFoundError, MemoryQuery

SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    session_id TEXT,
    cell_id TEXT,
    notebook TEXT,
    dataset_sha256 TEXT,
    dataset_name TEXT,
    score REAL NOT NULL DEFAULT 1.0,
    key TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_by_key ON memories (user, project, key)
    WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_by_dataset ON memories (user, dataset_sha256);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    text, dataset_name, content='memories', content_rowid='rowid',
    tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text, dataset_name)
    VALUES (new.rowid, new.text, coalesce(new.dataset_name, ''));
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text, dataset_name)
    VALUES ('delete', old.rowid, old.text, coalesce(old.dataset_name, ''));
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text, dataset_name ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text, dataset_name)
    VALUES ('delete', old.rowid, old.text, coalesce(old.dataset_name, ''));
    INSERT INTO memories_fts (rowid, text, dataset_name)
    VALUES (new.rowid, new.text, coalesce(new.dataset_name, ''));
END;
"""

COLUMNS = tuple(Memory.model_fields)

_STOPWORD_TEXT = (
    "the and for with from that this what which when where how are was were has have had "
    "not but all any can its into per than then them they you your csv tsv json txt file "
    "files data dataset show tell give find compute"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words too common in tasks to tell memories apart."""


def fts_query(text: str, max_terms: int = 24) -> str:
    """Free text as an FTS5 query: its distinct words, quoted, any of them."""
    words: list[str] = []
    for word in re.findall(r"\w+", text.lower()):
        if len(word) >= 3 and word not in STOPWORDS and word not in words:
            words.append(word)
    return " OR ".join(f'"{word}"' for word in words[:max_terms])


class SQLiteMemoryBackend:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        try:
            yield db
        finally:
            db.close()

    def put(self, memory: Memory) -> Memory:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if memory.key is not None:
                    row = db.execute(
                        "SELECT id, created_at, score FROM memories "
                        "WHERE user = ? AND project = ? AND key = ?",
                        (memory.user, memory.project, memory.key),
                    ).fetchone()
                    if row is not None:
                        memory = memory.model_copy(
                            update={
                                "id": row["id"],
                                "created_at": row["created_at"],
                                "score": max(memory.score, row["score"]),
                                "updated_at": time.time(),
                            }
                        )
                        db.execute("DELETE FROM memories WHERE id = ?", (row["id"],))
                values = memory.model_dump()
                db.execute(
                    f"INSERT INTO memories ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in COLUMNS)})",
                    [values[column] for column in COLUMNS],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return memory

    def get(self, user: str, memory_id: str) -> Memory:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM memories WHERE user = ? AND id = ?", (user, memory_id)
            ).fetchone()
            if row is None and len(memory_id) >= 4:
                rows = db.execute(
                    "SELECT * FROM memories WHERE user = ? AND id LIKE ? LIMIT 2",
                    (user, memory_id.replace("%", "").replace("_", "") + "%"),
                ).fetchall()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise MemoryNotFoundError(
                f"no memory {memory_id!r} of user {user!r} in {self.path}",
                hint="list them with `kernelagent memory list`",
            )
        return _memory(row)

    def delete(self, user: str, memory_id: str) -> Memory:
        memory = self.get(user, memory_id)
        with self._connect() as db:
            db.execute("DELETE FROM memories WHERE id = ?", (memory.id,))
        return memory

    def list(self, user: str, project: str | None = None) -> builtins.list[Memory]:
        where, args = "user = ?", [user]
        if project is not None:
            where += " AND project IN (?, '')"
            args.append(project)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM memories WHERE {where} ORDER BY updated_at DESC", args
            ).fetchall()
        return [_memory(row) for row in rows]

    def search(self, query: MemoryQuery) -> builtins.list[Memory]:
        where, args = _scope(query)
        found: builtins.list[Memory] = []
        with self._connect() as db:
            if query.datasets:
                marks = ", ".join("?" for _ in query.datasets)
                rows = db.execute(
                    f"SELECT * FROM memories WHERE {where} AND dataset_sha256 IN ({marks}) "
                    "ORDER BY kind = 'dataset' DESC, score DESC, updated_at DESC LIMIT ?",
                    [*args, *query.datasets, query.limit],
                ).fetchall()
                found = [_memory(row) for row in rows]
            match = fts_query(query.text)
            if match and len(found) < query.limit:
                seen = [memory.id for memory in found]
                not_seen = f" AND m.id NOT IN ({', '.join('?' for _ in seen)})" if seen else ""
                rows = db.execute(
                    "SELECT m.* FROM memories_fts"
                    " JOIN memories AS m ON m.rowid = memories_fts.rowid"
                    f" WHERE memories_fts MATCH ? AND {where}{not_seen}"
                    " ORDER BY bm25(memories_fts) * m.score, m.updated_at DESC LIMIT ?",
                    [match, *args, *seen, query.limit - len(found)],
                ).fetchall()
                found += [_memory(row) for row in rows]
        return found

    def bump(self, memory_ids: builtins.list[str], by: float = 0.1) -> None:
        if not memory_ids:
            return
        with self._connect() as db:
            db.executemany(
                "UPDATE memories SET score = score + ? WHERE id = ?",
                [(by, memory_id) for memory_id in memory_ids],
            )


def _scope(query: MemoryQuery) -> tuple[str, builtins.list[Any]]:
    where = "user = ? AND project IN (?, '')"
    args: builtins.list[Any] = [query.user, query.project or ""]
    if query.kinds:
        where += f" AND kind IN ({', '.join('?' for _ in query.kinds)})"
        args += list(query.kinds)
    return where, args


def _memory(row: sqlite3.Row) -> Memory:
    return Memory.model_validate(dict(row))
