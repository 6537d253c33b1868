"""A person's decision on an MCP session's pending action, handed to the server.

In a session kernelagent's own model drives, ``kernelagent approve`` resumes the loop. In
an MCP session the client chooses the actions, so the decision is kept in the session's
directory instead; the client's next call of the same code runs it (or is told it was
rejected). Bound to the sha256 of the code that was shown, like every approval.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from kernelagent.agent.approvals import Decision

DECISION_FILE = "mcp-approval.json"


def decision_path(session_dir: Path) -> Path:
    return session_dir / DECISION_FILE


def hand_over(session_dir: Path, decision: Decision) -> Path:
    """Write the decision for the MCP server (atomically: a reader never sees half of it)."""
    path = decision_path(session_dir)
    descriptor, temporary = tempfile.mkstemp(dir=session_dir, prefix=".approval-")
    with os.fdopen(descriptor, "w") as file:
        file.write(decision.model_dump_json())
    os.replace(temporary, path)
    return path


def take(session_dir: Path, cell_id: str) -> Decision | None:
    """The decision on the pending cell ``cell_id``, removed once read; None if there is none."""
    path = decision_path(session_dir)
    try:
        decision = Decision.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if decision.cell_id != cell_id:
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    return decision
