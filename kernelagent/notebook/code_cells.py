"""How the events of a code cell (started, outputs, finished, display updates, egress,
approvals) change its cell in the notebook."""

from __future__ import annotations

from typing import Any

import nbformat

from kernelagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    CellFinished,
    CellOutput,
    CellStarted,
    DisplayUpdated,
    EgressRequest,
    code_sha256,
)
from kernelagent.notebook.document import Document, iso, status

_AWAITING_RUN = ("awaiting_approval", "approved")
_IN_FLIGHT = (*_AWAITING_RUN, "running")
#: Egress requests kept per cell in the notebook (all of them are in the egress log).
MAX_EGRESS_RECORDS = 200


class CodeCellEvents:
    """Applies code-cell events to ``doc``."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def cell_started(self, event: CellStarted) -> None:
        cell = self.doc.cells_by_id.get(event.cell_id)
        if cell is None or status(cell) not in _AWAITING_RUN:
            cell = self.doc.append_code_cell(
                event.cell_id, event.tool_call_id, event.kind, event.code
            )
        started_at = iso(event.time)
        cell.source = event.code
        cell.outputs = []
        cell.metadata.kernelagent.update(status="running", started_at=started_at)
        cell.metadata["execution"] = {"iopub.execute_input": started_at}
        self.doc.changed(cell)

    def cell_output(self, event: CellOutput) -> None:
        cell = self.doc.code_cell(event.cell_id, event)
        if cell is None:
            return
        # A copy: the executor keeps mutating its own output dicts (stream merging, display
        # updates).
        cell.outputs.append(nbformat.from_dict(event.output))
        self.doc.changed(cell)

    def cell_finished(self, event: CellFinished) -> None:
        cell = self.doc.code_cell(event.cell_id, event)
        if cell is None:
            return
        started_at, finished_at = iso(event.started_at), iso(event.finished_at)
        cell.outputs = [nbformat.from_dict(output) for output in event.outputs]
        cell.execution_count = event.execution_count
        info = cell.metadata.kernelagent
        info.update(
            status=event.status,
            started_at=started_at,
            finished_at=finished_at,
            duration=round(event.finished_at - event.started_at, 6),
            truncated=event.truncated,
            detail=event.detail,
        )
        if event.manifest is not None:
            info["manifest"] = event.manifest
        cell.metadata["execution"] = {
            "iopub.execute_input": started_at,
            "shell.execute_reply": finished_at,
        }
        self.doc.changed(cell)

    def egress(self, event: EgressRequest) -> None:
        """Append the request to its cell's ``metadata.kernelagent.egress`` (or, made
        between cells, to the notebook's), keeping at most MAX_EGRESS_RECORDS per list."""
        cell = self.doc.cells_by_id.get(event.cell_id) if event.cell_id else None
        if cell is not None and cell.cell_type == "code":
            holder = cell.metadata.kernelagent
            self.doc.changed(cell)
        else:
            holder = self.doc.session
            self.doc.unsaved = True
        records = holder.setdefault("egress", [])
        if len(records) < MAX_EGRESS_RECORDS:
            records.append(nbformat.from_dict(dict(event.request)))
        else:
            holder["egress_not_kept"] = int(holder.get("egress_not_kept", 0)) + 1

    def approval_requested(self, event: ApprovalRequested) -> None:
        cell = self.doc.cells_by_id.get(event.cell_id)
        if cell is None or cell.cell_type != "code" or status(cell) not in _IN_FLIGHT:
            cell = self.doc.append_code_cell(
                event.cell_id,
                event.tool_call_id,
                event.kind,
                event.code,
                status="awaiting_approval",
            )
        decision = {
            "decision": "requested",
            "at": iso(event.time),
            "reason": event.reason,
            "code_sha256": event.code_sha256,
        }
        cell.metadata.kernelagent.setdefault("approval", []).append(decision)
        self.doc.changed(cell)

    def approval_decided(self, event: ApprovalDecided) -> None:
        cell = self.doc.code_cell(event.cell_id, event)
        if cell is None:
            return
        info = cell.metadata.kernelagent
        decision: dict[str, Any] = {
            "decision": event.decision,
            "by": event.decided_by,
            "at": iso(event.time),
            "reason": event.reason,
            "code_sha256": code_sha256(event.code),
        }
        if event.code != cell.source:
            decision["original_code"] = cell.source
            cell.source = event.code
        info.setdefault("approval", []).append(decision)
        if info.get("status") == "awaiting_approval":
            info["status"] = "rejected" if event.decision == "rejected" else "approved"
        self.doc.changed(cell)

    def display_updated(self, event: DisplayUpdated) -> None:
        cell = self.doc.code_cell(event.cell_id, event)
        if cell is None:
            return
        cell.outputs = [nbformat.from_dict(output) for output in event.outputs]
        self.doc.changed(cell)
