"""What running one cell produced."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kernelagent.events import NotebookOutput

ExecutionStatus = Literal["ok", "error", "timeout", "kernel_died"]


class ExecutionResult(BaseModel):
    status: ExecutionStatus
    outputs: list[NotebookOutput] = Field(default_factory=list)
    execution_count: int | None = None
    started_at: float
    finished_at: float
    truncated: bool = False
    dropped_bytes: int = 0
    detail: str = ""
    interrupt_ignored: bool = False
    """The kernel did not stop on interrupt after a timeout; the caller must restart it."""
    user_expressions: dict[str, Any] = Field(default_factory=dict)
    display_updates: dict[str, list[NotebookOutput]] = Field(default_factory=dict)
    """Earlier cells (by cell id) whose outputs this cell changed through a display id
    (``handle.update(...)``), with all their outputs as they are now."""

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def text(self) -> str:
        """Plain text of all outputs, as a person would read them."""
        parts: list[str] = []
        for output in self.outputs:
            kind = output["output_type"]
            if kind == "stream":
                parts.append(output["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(output.get("data", {}).get("text/plain", ""))
            elif kind == "error":
                parts.append("\n".join(output.get("traceback", [])))
        return "".join(part if part.endswith("\n") else part + "\n" for part in parts if part)
