"""How a call to a host tool (memory, an MCP server's tool) is recorded: one markdown cell
per call, its name, arguments and result readable in JupyterLab and kept in
``metadata.kernelagent.host_tool``. Replay runs no such cell: host tools are not the kernel's."""

from __future__ import annotations

import json
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from kernelagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    HostToolCalled,
    HostToolFinished,
    code_sha256,
)
from kernelagent.notebook.document import CELL_ID, Document, iso

RESULT_CHARS_KEPT = 4000
"""A longer result is clipped in the cell (the model got it whole)."""


class HostToolCells:
    """Applies host-tool events (and approvals of host-tool calls) to ``doc``."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def owns(self, cell_id: str) -> bool:
        cell = self.doc.cells_by_id.get(cell_id)
        return cell is not None and "host_tool" in cell.metadata.get("kernelagent", {})

    def approval_requested(self, event: ApprovalRequested) -> None:
        tool, _, arguments = event.code.partition(" ")
        cell = self._cell(event.cell_id, event.tool_call_id, tool, _loads(arguments), event)
        info = cell.metadata.kernelagent
        info["status"] = "awaiting_approval"
        info.setdefault("approval", []).append(
            {
                "decision": "requested",
                "at": iso(event.time),
                "reason": event.reason,
                "code_sha256": event.code_sha256,
            }
        )
        cell.source = _source(info["host_tool"], "awaiting approval")
        self.doc.changed(cell)

    def approval_decided(self, event: ApprovalDecided) -> None:
        cell = self.doc.cells_by_id[event.cell_id]
        info = cell.metadata.kernelagent
        info.setdefault("approval", []).append(
            {
                "decision": event.decision,
                "by": event.decided_by,
                "at": iso(event.time),
                "reason": event.reason,
                "code_sha256": code_sha256(event.code),
            }
        )
        info["status"] = "rejected" if event.decision == "rejected" else "approved"
        if event.decision == "rejected":
            cell.source = _source(info["host_tool"], f"rejected by {event.decided_by}")
        self.doc.changed(cell)

    def called(self, event: HostToolCalled) -> None:
        cell = self._cell(event.cell_id, event.tool_call_id, event.tool, event.arguments, event)
        info = cell.metadata.kernelagent
        info["status"] = "running"
        info["host_tool"].update(source=event.source, arguments=event.arguments)
        info["started_at"] = iso(event.time)
        cell.source = _source(info["host_tool"], "running")
        self.doc.changed(cell)

    def finished(self, event: HostToolFinished) -> None:
        cell = self.doc.cells_by_id.get(event.cell_id)
        if cell is None or not self.owns(event.cell_id):
            return
        info = cell.metadata.kernelagent
        clipped = len(event.text) > RESULT_CHARS_KEPT
        info["status"] = "error" if event.is_error else "ok"
        info["finished_at"] = iso(event.time)
        info["host_tool"].update(
            is_error=event.is_error,
            result=event.text[:RESULT_CHARS_KEPT],
            result_clipped=clipped,
            images=event.images,
            duration=round(event.duration, 3),
            metadata=event.metadata,
        )
        cell.source = _source(info["host_tool"], "error" if event.is_error else "")
        self.doc.changed(cell)

    def _cell(
        self, cell_id: str, tool_call_id: str, tool: str, arguments: Any, event: Event
    ) -> NotebookNode:
        cell = self.doc.cells_by_id.get(cell_id)
        if cell is not None and self.owns(cell_id):
            return cell
        metadata = self.doc.cell_metadata("host_tool", event)
        metadata["kernelagent"].update(
            cell_id=cell_id,
            tool_call_id=tool_call_id,
            host_tool={"tool": tool, "source": "", "arguments": arguments},
        )
        cell = new_markdown_cell("", metadata=metadata)
        if CELL_ID.match(cell_id) and cell_id not in self.doc.cells_by_id:
            cell.id = cell_id  # so a reopened notebook still finds the call by its id
        self.doc.append(cell)
        self.doc.cells_by_id[cell_id] = cell
        return cell


def _source(call: dict[str, Any], state: str) -> str:
    source = f" ({call['source']})" if call.get("source") else ""
    arguments = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=1)
    lines = [f"**Tool call:** `{call['tool']}`{source}" + (f" — {state}" if state else "")]
    lines += ["", "```json", arguments, "```"]
    if "result" in call:
        result = call["result"] + ("\n[…clipped]" if call.get("result_clipped") else "")
        lines += ["", "**Result:**", "", *(f"> {line}".rstrip() for line in result.splitlines())]
    return "\n".join(lines)


def _loads(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return text
