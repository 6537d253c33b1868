"""Branch notebooks: the records of a session's parallel attempts (pure nbformat).

Each attempt other than the session's own is recorded in a notebook of its own, marked
with the session it belongs to. When the vote picks such an attempt, its notebook becomes
the session notebook (:func:`adopt_branch`), so that the session's record, and what a later
``continue`` carries on, is the chosen attempt's work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat

from kernelagent.notebook.atomic import atomic_write
from kernelagent.notebook.recorder import load_notebook


def mark_branch(session_id: str, number: int) -> dict[str, Any]:
    """The ``metadata.kernelagent`` fields that make a notebook attempt ``number`` of a session."""
    return {"branch_of": session_id, "attempt": number}


def adopt_branch(
    branch: Path, session_notebook: Path, session_id: str, *, own_record: Path
) -> None:
    """Replace ``session_notebook`` by the chosen branch's notebook, as the session's.

    ``own_record`` is where the session's own attempt (1) was copied first; both are
    linked from the result's metadata (paths relative to the session notebook).
    """
    notebook = load_notebook(branch)
    info = notebook.metadata.setdefault("kernelagent", {})
    number = info.pop("attempt", None)
    info.pop("branch_of", None)
    info["session_id"] = session_id
    info["adopted_from"] = {
        "attempt": number,
        "notebook": _relative(branch, session_notebook.parent),
    }
    conversation = info.get("conversation")
    if isinstance(conversation, dict):
        conversation["adopted_from_attempt"] = number
    # the branch's answer is the session's only after the vote, which records it again
    while notebook.cells and _role(notebook.cells[-1]) == "answer":
        notebook.cells.pop()
    own = load_notebook(own_record)
    own_info = own.metadata.setdefault("kernelagent", {})
    own_info.update(mark_branch(session_id, 1))
    _write(own, own_record)
    _write(notebook, session_notebook)


def _role(cell: nbformat.NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("kernelagent", {}).get("role")


def _write(notebook: nbformat.NotebookNode, path: Path) -> None:
    atomic_write(path, [nbformat.writes(notebook).encode()])


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)
