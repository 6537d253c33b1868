"""The shared store: PostgreSQL through psycopg 3 (``pip install kernelagent[postgres]``).

One connection per process (per backend), used by one thread at a time. Status checks
lock the session's row (``SELECT ... FOR UPDATE``) so writers on many hosts serialise
on it. When the server goes away after the first connection (a restart, a failover),
a unit of work is retried on a new connection with backoff for up to
``$KERNELAGENT_STORE_RETRY_SECONDS`` (default 60); the first connection is not retried,
so a wrong URL fails at once.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from kernelagent.database.backend import (
    FIX_HINT,
    StoreUnavailableError,
    Transaction,
    redact,
)

try:
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - the message says how to install it
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
CONNECT_TIMEOUT = 5
RETRY_SECONDS = float(os.environ.get("KERNELAGENT_STORE_RETRY_SECONDS", 60))
FIRST_DELAY, MAX_DELAY = 0.1, 2.0
SCHEMA_LOCK = zlib.crc32(b"kernelagent_schema")
"""The advisory lock migrations hold, so hosts starting at once migrate one at a time."""


class PostgresTransaction:
    dialect: Literal["postgresql"] = "postgresql"
    row_lock = " FOR UPDATE"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.connection.execute(sql, params).fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.connection.execute(sql, params or None).rowcount)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def lock_schema(self) -> None:
        self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))


class PostgresBackend:
    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: str, retry_seconds: float = RETRY_SECONDS) -> None:
        if psycopg is None:
            raise StoreUnavailableError(
                "the store URL is PostgreSQL but psycopg is not installed",
                hint="pip install 'kernelagent[postgres]'",
            )
        self.conninfo = url
        self.url = redact(url)
        self.retry_seconds = retry_seconds
        self._connection: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._connected_once = False

    def run(self, work: Callable[[Transaction], T], *, write: bool = False) -> T:
        delay, deadline = FIRST_DELAY, time.monotonic() + self.retry_seconds
        while True:
            try:
                with self._lock:
                    connection = self._connect()
                    with connection.transaction():
                        return work(PostgresTransaction(connection))
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                lost = self._drop_if_broken()
                if not self._connected_once:
                    raise self._unreachable(error) from None
                conflict = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
                if not lost and not isinstance(error, conflict):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(
                        f"lost the session store {self.url} and could not reconnect within "
                        f"{self.retry_seconds:.0f} s: {_one_line(error)}",
                        hint="is PostgreSQL up? The session can be resumed once it is "
                        "(kernelagent resume ID)",
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _connect(self) -> Any:
        if self._pid != os.getpid():  # a forked child: the parent's socket is not ours
            self._connection, self._pid = None, os.getpid()
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self.conninfo,
                autocommit=True,  # transactions are explicit: connection.transaction()
                connect_timeout=CONNECT_TIMEOUT,
                row_factory=dict_row,
            )
            self._connected_once = True
        return self._connection

    def _drop_if_broken(self) -> bool:
        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            self._connection = None
            return True
        return False

    def _unreachable(self, error: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"cannot reach the session store {self.url}: {_one_line(error)}", hint=FIX_HINT
        )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
