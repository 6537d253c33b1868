"""Memories in the session store's database (SQLite or PostgreSQL, through
:class:`~kernelagent.database.backend.StoreBackend`): the same SQL on both, except for
the full-text search (see :mod:`~kernelagent.memory.schema`).

Each method is one short transaction. A key's memory is replaced by an upsert on the
``(user, project, key)`` index, so two processes writing the same dataset card at once
leave one row (with the first one's id).
"""

from __future__ import annotations

import builtins
from typing import Any

from kernelagent.database.backend import StoreBackend, Transaction, migrate
from kernelagent.memory.records import Memory, MemoryNotFoundError, MemoryQuery
from kernelagent.memory.schema import (
    COLUMN,
    COLUMNS,
    COMPONENT,
    FIELDS,
    SCHEMA,
    TEXT_SEARCH_CONFIG,
    fts_query,
    websearch_query,
)

SELECTED = ", ".join(f"m.{column}" for column in COLUMNS)
_REPLACED = [c for c in COLUMNS if c not in ("id", "user_name", "project", "key", "created_at")]
_UPSERT = (
    f"INSERT INTO memories ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (user_name, project, key) WHERE key IS NOT NULL DO UPDATE SET "
    + ", ".join(
        f"{column} = excluded.{column}"
        if column != "score"
        else "score = CASE WHEN excluded.score > memories.score "
        "THEN excluded.score ELSE memories.score END"
        for column in _REPLACED
    )
    + " RETURNING id, created_at, score"
)


class DatabaseMemoryBackend:
    """A :class:`~kernelagent.memory.records.MemoryBackend` over a store's database; makes
    (or updates) its tables when opened."""

    def __init__(self, database: StoreBackend) -> None:
        self.database = database
        migrate(database, COMPONENT, SCHEMA)

    @property
    def url(self) -> str:
        return self.database.url

    def put(self, memory: Memory) -> Memory:
        values = memory.model_dump()
        row = [values[field] for field in FIELDS]
        (stored,) = self.database.run(lambda tx: tx.query(_UPSERT, row), write=True)
        return memory.model_copy(update=stored)

    def put_many(self, memories: builtins.list[Memory]) -> int:
        """Insert memories as they are (an import): one whose id or key is taken is
        skipped. Returns how many were inserted."""
        rows = [[memory.model_dump()[field] for field in FIELDS] for memory in memories]
        insert = (
            f"INSERT INTO memories ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING"
        )
        return self.database.run(
            lambda tx: sum(tx.execute(insert, row) for row in rows), write=True
        )

    def get(self, user: str, memory_id: str) -> Memory:
        def work(tx: Transaction) -> dict[str, Any] | None:
            rows = tx.query(
                f"SELECT {SELECTED} FROM memories AS m WHERE m.user_name = %s AND m.id = %s",
                (user, memory_id),
            )
            if not rows and len(memory_id) >= 4:
                rows = tx.query(
                    f"SELECT {SELECTED} FROM memories AS m "
                    "WHERE m.user_name = %s AND substr(m.id, 1, %s) = %s LIMIT 2",
                    (user, len(memory_id), memory_id),
                )
                rows = rows if len(rows) == 1 else []
            return rows[0] if rows else None

        row = self.database.run(work)
        if row is None:
            raise MemoryNotFoundError(
                f"no memory {memory_id!r} of user {user!r} in {self.url}",
                hint="list them with `kernelagent memory list`",
            )
        return _memory(row)

    def delete(self, user: str, memory_id: str) -> Memory:
        memory = self.get(user, memory_id)
        self.database.run(
            lambda tx: tx.execute(
                "DELETE FROM memories WHERE id = %s AND user_name = %s", (memory.id, user)
            ),
            write=True,
        )
        return memory

    def list(self, user: str, project: str | None = None) -> builtins.list[Memory]:
        where, args = "m.user_name = %s", [user]
        if project is not None:
            where += " AND m.project IN (%s, '')"
            args.append(project)
        rows = self.database.run(
            lambda tx: tx.query(
                f"SELECT {SELECTED} FROM memories AS m WHERE {where} "
                "ORDER BY m.updated_at DESC, m.id",
                args,
            )
        )
        return [_memory(row) for row in rows]

    def search(self, query: MemoryQuery) -> builtins.list[Memory]:
        return [_memory(row) for row in self.database.run(lambda tx: _search(tx, query))]

    def bump(self, memory_ids: builtins.list[str], by: float = 0.1) -> None:
        if not memory_ids:
            return
        self.database.run(
            lambda tx: tx.execute_many(
                "UPDATE memories SET score = score + %s WHERE id = %s",
                [(by, memory_id) for memory_id in memory_ids],
            ),
            write=True,
        )


def _search(tx: Transaction, query: MemoryQuery) -> builtins.list[dict[str, Any]]:
    """Same dataset sha256 first (dataset cards, then score, then newest), then the
    full-text rank weighted by score."""
    where = "m.user_name = %s AND m.project IN (%s, '')"
    args: builtins.list[Any] = [query.user, query.project or ""]
    if query.kinds:
        where += f" AND m.kind IN ({', '.join(['%s'] * len(query.kinds))})"
        args += list(query.kinds)
    found: builtins.list[dict[str, Any]] = []
    if query.datasets:
        marks = ", ".join(["%s"] * len(query.datasets))
        found = tx.query(
            f"SELECT {SELECTED} FROM memories AS m WHERE {where} AND m.dataset_sha256 IN ({marks}) "
            "ORDER BY m.kind = 'dataset' DESC, m.score DESC, m.updated_at DESC, m.id LIMIT %s",
            [*args, *query.datasets, query.limit],
        )
    left = query.limit - len(found)
    if left <= 0:
        return found
    seen = [row["id"] for row in found]
    not_seen = f" AND m.id NOT IN ({', '.join(['%s'] * len(seen))})" if seen else ""
    if tx.dialect == "sqlite":
        match = fts_query(query.text)
        if not match:
            return found
        return found + tx.query(
            f"SELECT {SELECTED} FROM memories_fts"
            " JOIN memories AS m ON m.rowid = memories_fts.rowid"
            f" WHERE memories_fts MATCH %s AND {where}{not_seen}"
            " ORDER BY bm25(memories_fts) * m.score, m.updated_at DESC, m.id LIMIT %s",
            [match, *args, *seen, left],
        )
    match = websearch_query(query.text)
    if not match:
        return found
    return found + tx.query(
        f"SELECT {SELECTED} FROM memories AS m, "
        f"websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', %s) AS q"
        f" WHERE m.search @@ q AND {where}{not_seen}"
        " ORDER BY ts_rank(m.search, q) * m.score DESC, m.updated_at DESC, m.id LIMIT %s",
        [match, *args, *seen, left],
    )


def _memory(row: dict[str, Any]) -> Memory:
    return Memory.model_validate({field: row[COLUMN[field]] for field in FIELDS})
