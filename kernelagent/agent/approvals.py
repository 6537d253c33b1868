"""Which actions need a person's approval before they run.

``--approve never|shell|always`` sets the mode; rules add more: regular expressions on
the code or command, and "writes outside the workspace" (a conservative reading of
the code for absolute paths written to outside ``/workspace`` and ``/tmp``).
"""

from __future__ import annotations

import getpass
import re
import socket
from typing import Literal

from pydantic import BaseModel, Field

from kernelagent.literals import ApprovalMode

_ALLOWED_ROOTS = ("/workspace", "/tmp", "/dev/null")
_PYTHON_WRITE = re.compile(
    r"""(?:open\(\s*|to_(?:csv|parquet|json|excel|pickle|feather)\(\s*|savefig\(\s*|write_(?:text|bytes)\(|Path\(\s*)
        [rbuf]?['"](/[^'"]*)['"]""",
    re.VERBOSE,
)
_SHELL_WRITE = re.compile(
    r"(?:>>?|\btee\s+(?:-a\s+)?|\b(?:cp|mv|rm|touch|mkdir|chmod|chown|ln)\s+(?:-\S+\s+)*)(/[^\s;|&]*)"
)


def who() -> str:
    """The person deciding, as recorded in the notebook: user@host."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ApprovalPolicy(BaseModel):
    mode: ApprovalMode = "never"
    patterns: list[str] = Field(default_factory=list)
    """Regular expressions; code or a command that matches one needs approval."""
    writes_outside_workspace: bool = False

    def reason(self, kind: str, code: str) -> str | None:
        """Why this action needs approval, or None when it may run."""
        if self.mode == "always":
            return "every action needs approval (--approve always)"
        if self.mode == "shell" and kind == "shell":
            return "shell commands need approval (--approve shell)"
        for pattern in self.patterns:
            if re.search(pattern, code):
                return f"matches the approval rule {pattern!r}"
        if self.writes_outside_workspace:
            target = write_outside_workspace(kind, code)
            if target is not None:
                return f"writes outside the workspace ({target})"
        return None


def write_outside_workspace(kind: str, code: str) -> str | None:
    """An absolute path outside /workspace and /tmp that the code seems to write to."""
    pattern = _SHELL_WRITE if kind == "shell" or code.startswith("%%bash") else _PYTHON_WRITE
    for match in pattern.finditer(code):
        path = match.group(1)
        if not path.startswith(_ALLOWED_ROOTS):
            return path
    if kind == "python":
        for line in code.splitlines():
            if line.lstrip().startswith("!"):
                found = write_outside_workspace("shell", line.lstrip()[1:])
                if found:
                    return found
    return None


class PendingApproval(BaseModel):
    """An action waiting for a person: exactly this code, for this reason."""

    cell_id: str
    tool_call_id: str
    kind: str
    code: str
    code_sha256: str
    reason: str


class Decision(BaseModel):
    """A person's decision on a pending action, bound to the code they saw."""

    tool_call_id: str
    cell_id: str
    decision: Literal["approved", "edited", "rejected"]
    code: str
    """The code to run: the pending code, or the person's edit."""
    approved_sha256: str
    """sha256 of the pending code the person saw; rechecked before running."""
    decided_by: str
    reason: str = ""
