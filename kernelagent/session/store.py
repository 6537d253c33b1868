"""The session store: an SQLite index of sessions plus one directory per session.

    <home>/sessions.db                 the index (status, task, usage, sandbox, pending approval)
    <home>/sessions/<id>/workspace/    the sandbox's workspace (survives the container)
    <home>/sessions/<id>/session.ipynb the notebook: the durable log and the conversation

The home is ``$KERNELAGENT_HOME`` or ``<jupyter data dir>/kernelagent``. Every write is
a short transaction, so a crash at any point leaves a session that can be resumed.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from pydantic import BaseModel

from kernelagent.agent.approvals import PendingApproval
from kernelagent.errors import KernelAgentError
from kernelagent.events import SessionStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    task TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    cells INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    notebook TEXT NOT NULL,
    workspace TEXT NOT NULL,
    config TEXT NOT NULL,
    sandbox_state TEXT,
    pending TEXT,
    owner_pid INTEGER
);
"""

#: Which status may follow which; anything else is a bug and is refused.
TRANSITIONS: dict[str, set[str]] = {
    "starting": {"running", "failed", "interrupted"},
    "running": {"running", "awaiting_approval", "paused", "completed", "failed", "interrupted"},
    "awaiting_approval": {"running", "failed", "interrupted", "paused"},
    "paused": {"running", "failed", "paused"},
    "interrupted": {"running", "failed", "interrupted"},
    "completed": {"running"},
    "failed": {"running", "failed"},
}

DEFAULT_IDLE_SECONDS = float(os.environ.get("KERNELAGENT_IDLE_TIMEOUT", 30 * 60))
"""How long a waiting session keeps its sandbox before it is stopped (restored on resume)."""
WAITING = ("awaiting_approval", "paused", "interrupted")
"""Statuses of sessions that wait for a person."""


class SessionNotFoundError(KernelAgentError, LookupError):
    pass


class SessionStateError(KernelAgentError, RuntimeError):
    """The session exists but cannot do what was asked (e.g. resume a completed one)."""


class SessionRecord(BaseModel):
    id: str
    status: SessionStatus
    reason: str = ""
    task: str
    created_at: float
    updated_at: float
    steps: int = 0
    cells: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    notebook: Path
    workspace: Path
    config: dict[str, Any]
    sandbox_state: dict[str, Any] | None = None
    pending: PendingApproval | None = None
    owner_pid: int | None = None

    @property
    def directory(self) -> Path:
        return self.notebook.parent


def default_home() -> Path:
    return Path(os.environ.get("KERNELAGENT_HOME") or Path(jupyter_data_dir()) / "kernelagent")


class SessionStore:
    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "sessions.db"
        with self._connect() as db:
            db.executescript(SCHEMA)

    def session_dir(self, session_id: str) -> Path:
        return self.home / "sessions" / session_id

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        try:
            yield db
        finally:
            db.close()

    def create(self, record: SessionRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO sessions (id, status, reason, task, created_at, updated_at, steps, "
                "cells,"
                " input_tokens, output_tokens, notebook, workspace, config, sandbox_state, "
                "pending, owner_pid)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.status,
                    record.reason,
                    record.task,
                    record.created_at,
                    record.updated_at,
                    record.steps,
                    record.cells,
                    record.input_tokens,
                    record.output_tokens,
                    str(record.notebook),
                    str(record.workspace),
                    json.dumps(record.config),
                    _json(record.sandbox_state),
                    record.pending.model_dump_json() if record.pending else None,
                    record.owner_pid,
                ),
            )

    def get(self, session_id: str) -> SessionRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                matches = db.execute(
                    "SELECT * FROM sessions WHERE id LIKE ? LIMIT 2", (session_id + "%",)
                ).fetchall()
                if len(matches) == 1 and len(session_id) >= 4:
                    row = matches[0]
        if row is None:
            raise SessionNotFoundError(
                f"no session {session_id!r} in {self.home} (list them with `kernelagent sessions`)"
            )
        return _record(row)

    def list(self) -> list[SessionRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM sessions ORDER BY created_at DESC").fetchall()
        return [_record(row) for row in rows]

    def update(self, session_id: str, **fields: Any) -> None:
        """Set columns; ``status`` changes are checked against :data:`TRANSITIONS`."""
        if not fields:
            return
        fields["updated_at"] = time.time()
        encoded = {key: _encode(key, value) for key, value in fields.items()}
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if "status" in fields:
                    row = db.execute(
                        "SELECT status FROM sessions WHERE id = ?", (session_id,)
                    ).fetchone()
                    if row is None:
                        raise SessionNotFoundError(f"no session {session_id!r}")
                    allowed = TRANSITIONS.get(row["status"], set())
                    if fields["status"] != row["status"] and fields["status"] not in allowed:
                        raise SessionStateError(
                            f"session {session_id}: cannot go from {row['status']} to "
                            f"{fields['status']}"
                        )
                assignments = ", ".join(f"{key} = ?" for key in encoded)
                db.execute(
                    f"UPDATE sessions SET {assignments} WHERE id = ?",
                    (*encoded.values(), session_id),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

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


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _encode(key: str, value: Any) -> Any:
    if key in ("config", "sandbox_state"):
        return _json(value)
    if key == "pending":
        return value.model_dump_json() if isinstance(value, PendingApproval) else _json(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _record(row: sqlite3.Row) -> SessionRecord:
    data = dict(row)
    data["config"] = json.loads(data["config"])
    data["sandbox_state"] = json.loads(data["sandbox_state"]) if data["sandbox_state"] else None
    data["pending"] = (
        PendingApproval.model_validate_json(data["pending"]) if data["pending"] else None
    )
    return SessionRecord.model_validate(data)
