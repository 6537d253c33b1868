"""The kernel of a notebook open in JupyterLab, as the agent loop's computer.

The server cannot insert a cell into a notebook a person has open: JupyterLab owns that
document (its shared model, undo history, collaborators, saving). So a cell runs like
this: the loop emits ``cell_started``; the panel inserts the cell below the active one
through the notebook's model and runs it on the notebook's kernel; then it posts the
cell's outputs back (``POST sessions/{id}/cells/{cell_id}``), which :meth:`deliver`
hands to the waiting :meth:`NotebookKernel.execute`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kernelagent.errors import ConflictError, KernelAgentError
from kernelagent.execution.outputs import OutputCallback
from kernelagent.execution.result import ExecutionResult
from kernelagent.sandbox.docker_provisioner import CONTAINER_WORKSPACE
from kernelagent.server.notebook_requests import CellResultRequest

NO_PANEL_DETAIL = (
    "no JupyterLab panel ran this cell within {seconds:.0f} s: the notebook must stay open "
    "with the kernelagent panel bound to it"
)
RESTARTED = (
    "the notebook's kernel died or was restarted: its variables are gone, so re-create what "
    "you need (the files next to the notebook remain)."
)


class NotebookKernel:
    """Runs the agent's cells in a notebook open in JupyterLab, through the panel.

    ``workspace`` is the notebook's directory: the sandbox kernel JupyterLab starts for
    the notebook mounts it as ``/workspace``.
    """

    def __init__(self, workspace: Path) -> None:
        self._workspace = workspace
        self._waiting: dict[str, asyncio.Future[CellResultRequest]] = {}

    @property
    def workspace(self) -> Path:
        return self._workspace

    @property
    def kernel_workspace(self) -> str:
        return CONTAINER_WORKSPACE

    def waiting_for(self) -> list[str]:
        """The ids of the cells the panel has not answered yet."""
        return list(self._waiting)

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        manifest: bool = False,
        cell_id: str | None = None,
    ) -> ExecutionResult:
        """Called by the loop right after it emitted ``cell_started`` for ``cell_id``; waits
        for the panel to run the cell and post its outputs."""
        if cell_id is None:
            raise KernelAgentError("a notebook cell needs an id", "this is a bug in kernelagent")
        started = time.time()
        future: asyncio.Future[CellResultRequest] = asyncio.get_running_loop().create_future()
        self._waiting[cell_id] = future
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return ExecutionResult(
                status="timeout",
                started_at=started,
                finished_at=time.time(),
                detail=NO_PANEL_DETAIL.format(seconds=timeout or 0),
            )
        finally:
            self._waiting.pop(cell_id, None)
        for output in result.outputs:
            if on_output is not None:
                on_output(output)
        return ExecutionResult(
            status=result.status,
            outputs=result.outputs,
            execution_count=result.execution_count,
            started_at=started,
            finished_at=time.time(),
            detail=result.detail,
        )

    def deliver(self, cell_id: str, result: CellResultRequest) -> None:
        """The panel's outputs for a cell it ran; ConflictError for a cell nobody waits for."""
        future = self._waiting.get(cell_id)
        if future is None or future.done():
            raise ConflictError(
                f"no cell {cell_id!r} is waiting for its outputs",
                hint="the session stopped, or the cell's outputs were posted already",
            )
        future.set_result(result)

    async def restart(self) -> None:
        """The notebook's kernel belongs to JupyterLab: the person restarts it there."""

    def cancel(self) -> None:
        """Stop waiting (the session was stopped)."""
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()


async def notebook_kernel_restarted() -> str:
    """The loop's kernel recovery for a notebook: nothing to rebuild from here."""
    return RESTARTED
