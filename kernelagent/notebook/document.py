"""The notebook a session is recorded into: its cells by the ids events use, and the
shapes of the cells and metadata kernelagent writes."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell
from nbformat.v4.nbbase import random_cell_id

from kernelagent.events import Event
from kernelagent.notebook.writer import NotebookWriter

log = logging.getLogger(__name__)

CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


class Document:
    """A live notebook and its cells by id; tells the writer which cells changed."""

    def __init__(self, notebook: NotebookNode, writer: NotebookWriter) -> None:
        self.notebook = notebook
        self.writer = writer
        self.cells_by_id: dict[str, NotebookNode] = {
            cell["id"]: cell for cell in notebook.cells if "id" in cell
        }
        self.model: str | None = self.session.get("model")
        """The model recorded on the cells the model produces."""
        self.unsaved = True

    @property
    def session(self) -> NotebookNode:
        """``metadata.kernelagent``."""
        return self.notebook.metadata["kernelagent"]

    def cell_metadata(self, role: str, event: Event) -> dict[str, Any]:
        info: dict[str, Any] = {"role": role, "at": iso(event.time)}
        if role in ("assistant", "answer"):
            info["model"] = self.model
        return {"kernelagent": info}

    def append(self, cell: NotebookNode) -> None:
        self.notebook.cells.append(cell)
        self.cells_by_id[cell.id] = cell
        self.unsaved = True

    def append_note(self, role: str, title: str, text: str, event: Event) -> None:
        quoted = "\n".join(f"> {line}".rstrip() for line in f"**{title}:** {text}".splitlines())
        self.append(new_markdown_cell(quoted, metadata=self.cell_metadata(role, event)))

    def append_code_cell(
        self, cell_id: str, tool_call_id: str, kind: str, code: str, status: str = "running"
    ) -> NotebookNode:
        # Reusing an id already in the notebook (say, from an earlier session) would make it
        # invalid.
        usable = CELL_ID.match(cell_id) and cell_id not in self.cells_by_id
        # What nbformat's new_code_cell builds, minus its jsonschema check of every new cell
        # (~0.7 ms, a third of a short session's cost per cell); save() validates changed cells.
        cell = nbformat.from_dict(
            {
                "id": cell_id if usable else random_cell_id(),
                "cell_type": "code",
                "metadata": {
                    "kernelagent": {
                        "tool_call_id": tool_call_id,
                        "kind": kind,
                        "status": status,
                        "model": self.model,
                    }
                },
                "execution_count": None,
                "source": code,
                "outputs": [],
            }
        )
        self.append(cell)
        self.cells_by_id[cell_id] = cell  # events keep using their id, whatever the cell's is
        return cell

    def code_cell(self, cell_id: str, event: Event) -> NotebookNode | None:
        cell = self.cells_by_id.get(cell_id)
        if cell is None or cell.cell_type != "code":
            log.warning("%s for unknown cell %r: not recorded", type(event).__name__, cell_id)
            return None
        return cell

    def changed(self, cell: NotebookNode) -> None:
        self.writer.changed(cell)
        self.unsaved = True


def default_session_metadata(session_id: str) -> dict[str, Any]:
    now = iso(time.time())
    return {
        "session_id": session_id,
        "task": None,
        "model": None,
        "sandbox": None,
        "image": None,
        "workspace": None,
        "status": "starting",
        "usage": {},
        "created_at": now,
        "updated_at": now,
        "answer": None,
        "conversation": None,
    }


def iso(timestamp: float) -> str:
    """UTC ISO 8601 with a Z, as JupyterLab writes execution timings."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def labelled(label: str, text: str) -> str:
    if "\n" in text.strip():
        return f"**{label}:**\n\n{text}"
    return f"**{label}:** {text.strip()}"


def role(cell: NotebookNode) -> str | None:
    info = cell.get("metadata", {}).get("kernelagent")
    return info.get("role") if isinstance(info, dict) else None


def status(cell: NotebookNode) -> str | None:
    info = cell.get("metadata", {}).get("kernelagent")
    return info.get("status") if isinstance(info, dict) else None
