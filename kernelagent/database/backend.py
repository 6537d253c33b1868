"""The database under the session store (and any other table set): SQLite (embedded,
the default) or PostgreSQL (shared by many hosts), chosen by a URL.

    sqlite:///ABSOLUTE/PATH/sessions.db      (default: <KERNELAGENT_HOME>/sessions.db)
    postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE

The URL is ``$KERNELAGENT_STORE_URL`` (the CLI's ``--store`` sets it). A backend does one
thing: it runs a unit of work in a transaction (:meth:`StoreBackend.run`), retrying it
when the database went away for a moment. SQL is written once, with ``%s`` placeholders;
``tx.row_lock`` is `` FOR UPDATE`` where rows must be locked (PostgreSQL) and empty where
the whole database is (SQLite's ``BEGIN IMMEDIATE``).

Another table set can live in the same database (the session index does, and so can a
memory store): ``open_backend(store_url(home))`` (or a SessionStore's ``backend``), call
:func:`migrate` once with its own component name and its schema steps per dialect, then
``backend.run(work, write=True)`` with ``work(tx)`` doing its SQL (``tx.connection`` is
the driver's connection, for what the protocol does not cover).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from kernelagent.errors import KernelAgentError

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
STORE_URL_VARIABLE = "KERNELAGENT_STORE_URL"
FIX_HINT = f"check ${STORE_URL_VARIABLE} (or --store): sqlite:///PATH or postgresql://HOST/DB"


class StoreUnavailableError(KernelAgentError, RuntimeError):
    """The store's database cannot be reached, opened or used; nothing was written."""


class Transaction(Protocol):
    """One transaction of a unit of work; rows come back as dicts."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def row_lock(self) -> str:
        """Appended to a ``SELECT`` whose rows the transaction will update."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed."""
        ...

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def lock_schema(self) -> None:
        """Wait until no other process migrates the schema (held to the transaction's end)."""
        ...


class StoreBackend(Protocol):
    url: str
    """Where the data is, for messages (no password)."""

    @property
    def dialect(self) -> Dialect: ...

    def run(self, work: Callable[[Transaction], T], *, write: bool = False) -> T:
        """``work(tx)`` in one transaction, committed when it returns, rolled back when it
        raises. ``work`` may run again after a lost connection: keep it idempotent."""
        ...

    def close(self) -> None: ...


def store_url(home: Path, url: str | None = None) -> str:
    """The URL asked for, else ``$KERNELAGENT_STORE_URL``, else SQLite in ``home``."""
    chosen = url or os.environ.get(STORE_URL_VARIABLE) or ""
    return chosen.strip() or f"sqlite://{(home / 'sessions.db').absolute()}"


def open_backend(url: str) -> StoreBackend:
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "sqlite":
        from kernelagent.database.sqlite import SQLiteBackend

        path = url.split("://", 1)[1] if "://" in url else ""
        if not path.startswith("/") or not path.strip("/"):
            raise StoreUnavailableError(
                f"the store URL {url!r} names no absolute file",
                hint="write sqlite:// then an absolute path, e.g. sqlite:///var/lib/kernelagent/sessions.db",
            )
        return SQLiteBackend(Path("/" + path.lstrip("/")))
    if scheme in ("postgresql", "postgres"):
        from kernelagent.database.postgres import PostgresBackend

        return PostgresBackend(url)
    raise StoreUnavailableError(f"unknown store URL {redact(url)!r}", hint=FIX_HINT)


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS kernelagent_schema "
    "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


def migrate(
    backend: StoreBackend, component: str, steps: Mapping[Dialect, Sequence[Sequence[str]]]
) -> int:
    """Bring ``component``'s tables to the newest version: ``steps[dialect][n]`` are the
    statements that go from version n to n+1. Safe when many processes start at once.
    Returns the version the schema had before."""

    def work(tx: Transaction) -> int:
        tx.lock_schema()
        tx.execute(SCHEMA_TABLE)
        rows = tx.query("SELECT version FROM kernelagent_schema WHERE component = %s", (component,))
        current = int(rows[0]["version"]) if rows else 0
        wanted = steps[tx.dialect]
        if current > len(wanted):
            raise StoreUnavailableError(
                f"the store at {backend.url} has {component} schema version {current}, newer than "
                f"this kernelagent knows ({len(wanted)})",
                hint="upgrade kernelagent on this host to the version the other hosts run",
            )
        for statements in wanted[current:]:
            for statement in statements:
                tx.execute(statement)
        if current < len(wanted):
            tx.execute("DELETE FROM kernelagent_schema WHERE component = %s", (component,))
            tx.execute(
                "INSERT INTO kernelagent_schema (component, version) VALUES (%s, %s)",
                (component, len(wanted)),
            )
        return current

    return backend.run(work, write=True)
