"""The embedded store: one SQLite file, a short-lived connection per unit of work.

Writers take the database's write lock up front (``BEGIN IMMEDIATE``), so a status
check and the update that follows it cannot interleave with another process's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from kernelagent.database.backend import FIX_HINT, StoreUnavailableError, Transaction

T = TypeVar("T")
BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another process's write lock."""


class SQLiteTransaction:
    dialect: Literal["sqlite"] = "sqlite"
    row_lock = ""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.connection = db

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.connection.execute(_qmark(sql), params).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.connection.execute(_qmark(sql), params).rowcount

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.connection.executemany(_qmark(sql), rows)

    def lock_schema(self) -> None:
        """The write transaction already holds the whole database."""


class SQLiteBackend:
    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite://{path}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailableError(
                f"cannot create the store's directory {path.parent}: {error.strerror}",
                hint=FIX_HINT,
            ) from None

    def run(self, work: Callable[[Transaction], T], *, write: bool = False) -> T:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(SQLiteTransaction(db))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return result
        finally:
            db.close()

    def close(self) -> None:
        """Connections are closed after each unit of work."""

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.OperationalError as error:
            if "locked" in str(error):
                raise
            raise StoreUnavailableError(
                f"cannot open the session store {self.path}: {error}", hint=FIX_HINT
            ) from None
        return db


def _qmark(sql: str) -> str:
    return sql.replace("%s", "?")
