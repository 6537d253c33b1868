"""What the session index holds: one :class:`SessionRecord` per session, the status
transitions it allows, and how a record is written to and read from a row."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from pydantic import BaseModel

from kernelagent.agent.approvals import PendingApproval
from kernelagent.errors import KernelAgentError
from kernelagent.events import SessionStatus

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
    node: str | None = None
    """The cluster node (a Ray node id) the session runs or last ran on; None off a cluster."""

    @property
    def directory(self) -> Path:
        return self.notebook.parent


COLUMNS = tuple(SessionRecord.model_fields)


def default_home() -> Path:
    return Path(os.environ.get("KERNELAGENT_HOME") or Path(jupyter_data_dir()) / "kernelagent")


def check_transition(session_id: str, current: str, new: str) -> None:
    if new != current and new not in TRANSITIONS.get(current, set()):
        raise SessionStateError(f"session {session_id}: cannot go from {current} to {new}")


def encode(key: str, value: Any) -> Any:
    """A record field as its column holds it (JSON text for the structured ones)."""
    if key in ("config", "sandbox_state"):
        return _json(value)
    if key == "pending":
        return value.model_dump_json() if isinstance(value, PendingApproval) else _json(value)
    if isinstance(value, Path):
        return str(value)
    return value


def row_values(record: SessionRecord) -> tuple[Any, ...]:
    return tuple(encode(name, getattr(record, name)) for name in COLUMNS)


def decode(row: Mapping[str, Any]) -> SessionRecord:
    data = dict(row)
    data["config"] = json.loads(data["config"])
    data["sandbox_state"] = json.loads(data["sandbox_state"]) if data["sandbox_state"] else None
    data["pending"] = (
        PendingApproval.model_validate_json(data["pending"]) if data["pending"] else None
    )
    return SessionRecord.model_validate(data)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
