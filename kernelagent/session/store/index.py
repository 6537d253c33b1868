"""The session store: the index of sessions and the server's event logs in a database
(:mod:`kernelagent.database.backend`), and one directory per session on disk.

    <home>/sessions.db                 the index, when it is SQLite (the default)
    <home>/sessions/<id>/workspace/    the sandbox's workspace (survives the container)
    <home>/sessions/<id>/session.ipynb the notebook: the durable log and the conversation

The home is ``$KERNELAGENT_HOME`` or ``<jupyter data dir>/kernelagent``; on a cluster it
is a filesystem every node shares. Every write is a short transaction, so a crash at any
point leaves a session that can be resumed.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kernelagent.database.backend import (
    Dialect,
    StoreBackend,
    Transaction,
    migrate,
    open_backend,
    store_url,
)
from kernelagent.session.store.records import (
    COLUMNS,
    DEFAULT_IDLE_SECONDS,
    WAITING,
    SessionNotFoundError,
    SessionRecord,
    check_transition,
    decode,
    default_home,
    encode,
    row_values,
)

_SESSIONS = """CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    task TEXT NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    cells INTEGER NOT NULL DEFAULT 0,
    input_tokens {big} NOT NULL DEFAULT 0,
    output_tokens {big} NOT NULL DEFAULT 0,
    notebook TEXT NOT NULL,
    workspace TEXT NOT NULL,
    config TEXT NOT NULL,
    sandbox_state TEXT,
    pending TEXT,
    owner_pid INTEGER
)"""
_EVENTS = (
    "CREATE TABLE IF NOT EXISTS server_events (session_id TEXT NOT NULL, seq {big} NOT NULL, "
    "data TEXT NOT NULL, PRIMARY KEY (session_id, seq))"
)
_NODE = "ALTER TABLE sessions ADD COLUMN node TEXT"


def _steps(real: str, big: str) -> list[list[str]]:
    # Version 1 is the table SQLite stores made before versions were kept.
    return [
        [_SESSIONS.format(real=real, big=big)],
        [_EVENTS.format(big=big), _NODE],
    ]


SCHEMA: dict[Dialect, list[list[str]]] = {
    "sqlite": _steps("REAL", "INTEGER"),
    "postgresql": _steps("DOUBLE PRECISION", "BIGINT"),
}
"""The index's schema, version by version (see :func:`migrate`)."""

_INSERT = (
    f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)


class SessionStore:
    """Sessions' rows (status, task, usage, sandbox, pending approval) and the server's
    per-session event logs, in the database ``url`` names (default
    ``$KERNELAGENT_STORE_URL``, else SQLite at ``<home>/sessions.db``)."""

    def __init__(self, home: str | Path | None = None, url: str | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.given_url = store_url(self.home, url)
        """The URL as given, password and all: for processes that open the same store."""
        self.backend: StoreBackend = open_backend(self.given_url)
        migrate(self.backend, "sessions", SCHEMA)

    @property
    def url(self) -> str:
        """Where the index is (no password)."""
        return self.backend.url

    def session_dir(self, session_id: str) -> Path:
        return self.home / "sessions" / session_id

    def create(self, record: SessionRecord) -> None:
        self.backend.run(lambda tx: tx.execute(_INSERT, row_values(record)), write=True)

    def get(self, session_id: str) -> SessionRecord:
        def work(tx: Transaction) -> dict[str, Any] | None:
            rows = tx.query("SELECT * FROM sessions WHERE id = %s", (session_id,))
            if not rows and len(session_id) >= 4:
                rows = tx.query(
                    "SELECT * FROM sessions WHERE id LIKE %s LIMIT 2", (session_id + "%",)
                )
                rows = rows if len(rows) == 1 else []
            return rows[0] if rows else None

        row = self.backend.run(work)
        if row is None:
            raise SessionNotFoundError(
                f"no session {session_id!r} in {self.url} (list them with `kernelagent sessions`)"
            )
        return decode(row)

    def list(self) -> list[SessionRecord]:
        rows = self.backend.run(
            lambda tx: tx.query("SELECT * FROM sessions ORDER BY created_at DESC")
        )
        return [decode(row) for row in rows]

    def update(self, session_id: str, **fields: Any) -> None:
        """Set columns; ``status`` changes are checked against
        :data:`~kernelagent.session.store.records.TRANSITIONS` while the row is locked."""
        if not fields:
            return
        unknown = sorted(set(fields) - set(COLUMNS))
        if unknown:
            raise ValueError(f"not columns of the session index: {unknown}")
        fields["updated_at"] = time.time()
        encoded = {key: encode(key, value) for key, value in fields.items()}
        assignments = ", ".join(f"{key} = %s" for key in encoded)

        def work(tx: Transaction) -> None:
            if "status" in fields:
                rows = tx.query(
                    f"SELECT status FROM sessions WHERE id = %s{tx.row_lock}", (session_id,)
                )
                if not rows:
                    raise SessionNotFoundError(f"no session {session_id!r}")
                check_transition(session_id, rows[0]["status"], fields["status"])
            tx.execute(
                f"UPDATE sessions SET {assignments} WHERE id = %s",
                (*encoded.values(), session_id),
            )

        self.backend.run(work, write=True)

    def update_if(
        self, session_id: str, condition: Callable[[SessionRecord], bool], **fields: Any
    ) -> bool:
        """Set columns only if ``condition(record)`` holds while the row is locked; returns
        whether it did. Two processes that claim one session cannot both succeed."""
        fields["updated_at"] = time.time()
        unknown = sorted(set(fields) - set(COLUMNS))
        if unknown:
            raise ValueError(f"not columns of the session index: {unknown}")
        encoded = {key: encode(key, value) for key, value in fields.items()}
        assignments = ", ".join(f"{key} = %s" for key in encoded)

        def work(tx: Transaction) -> bool:
            rows = tx.query(f"SELECT * FROM sessions WHERE id = %s{tx.row_lock}", (session_id,))
            if not rows:
                raise SessionNotFoundError(f"no session {session_id!r}")
            record = decode(rows[0])
            if not condition(record):
                return False
            if "status" in fields:
                check_transition(session_id, record.status, fields["status"])
            tx.execute(
                f"UPDATE sessions SET {assignments} WHERE id = %s",
                (*encoded.values(), session_id),
            )
            return True

        return self.backend.run(work, write=True)

    def sessions_with_live_sandboxes(self) -> builtins.list[SessionRecord]:
        return [
            r for r in self.list() if r.sandbox_state and r.status not in ("completed", "failed")
        ]

    def idle_sandboxes(self, idle_seconds: float | None = None) -> builtins.list[SessionRecord]:
        """Sessions that wait (for approval, after a pause or an interruption) longer than
        ``idle_seconds`` (default: ``$KERNELAGENT_IDLE_TIMEOUT``) with their sandbox up."""
        idle = DEFAULT_IDLE_SECONDS if idle_seconds is None else idle_seconds
        now = time.time()
        return [
            record
            for record in self.sessions_with_live_sandboxes()
            if record.status in WAITING and now - record.updated_at >= idle
        ]

    # -- the server's event logs ---------------------------------------------------------

    def append_events(self, session_id: str, events: Sequence[dict[str, Any]]) -> None:
        """Add events (each with an int ``seq``); a ``seq`` already logged is kept as it was."""
        rows = [(session_id, int(event["seq"]), json.dumps(event)) for event in events]
        if rows:
            self.backend.run(
                lambda tx: tx.execute_many(
                    "INSERT INTO server_events (session_id, seq, data) VALUES (%s, %s, %s) "
                    "ON CONFLICT (session_id, seq) DO NOTHING",
                    rows,
                ),
                write=True,
            )

    def events(self, session_id: str) -> builtins.list[dict[str, Any]]:
        """A session's logged events, in ``seq`` order."""
        rows = self.backend.run(
            lambda tx: tx.query(
                "SELECT data FROM server_events WHERE session_id = %s ORDER BY seq", (session_id,)
            )
        )
        return [json.loads(row["data"]) for row in rows]
