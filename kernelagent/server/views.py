"""What the HTTP API shows of a session, and paths as the server's clients see them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernelagent.machine_files import pid_alive
from kernelagent.server.event_log import SessionEntry
from kernelagent.session.store import SessionRecord

PENDING_FIELDS = ("cell_id", "kind", "code", "code_sha256", "reason")
ACTIVE = ("running", "starting")


def session_view(
    record: SessionRecord, entry: SessionEntry | None, show_path: Callable[[Path], str]
) -> dict[str, Any]:
    """The session as the HTTP API shows it; ``entry`` is the server's own state of it."""
    status, reason, pending = record.status, record.reason, record.pending
    busy = entry is not None and entry.running
    if busy and entry is not None and not entry.finishing and status not in ACTIVE:
        # A follow-up or an approval is being resumed; the store changes when it runs.
        status, reason, pending = "starting", "resuming", None
    elif not busy and status in ACTIVE and not _owner_alive(record.owner_pid):
        status = "interrupted"
        reason = record.reason or "the process that ran this session stopped"
    return {
        "id": record.id,
        "status": status,
        "reason": reason,
        "task": record.task,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "steps": record.steps,
        "cells": record.cells,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "notebook": show_path(record.notebook),
        "in_notebook": record.config.get("in_notebook"),
        "pending": {name: getattr(pending, name) for name in PENDING_FIELDS} if pending else None,
    }


def display_path(root: Path, path: Path) -> str:
    """Relative to ``root`` when inside it, else absolute."""
    absolute = Path(path).expanduser().resolve()
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def _owner_alive(pid: int | None) -> bool:
    """Whether another live process owns the session (this one's runs are in ``entry``)."""
    return pid is not None and pid not in (0, os.getpid()) and pid_alive(pid)
