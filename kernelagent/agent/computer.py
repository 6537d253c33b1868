"""What the agent loop needs of the computer it acts on.

Two things satisfy it: a :class:`~kernelagent.sandbox.sandbox.Sandbox` (a kernel of the
session's own, in a container), and the kernel of a notebook a person has open in
JupyterLab, reached through the panel (``kernelagent.server.notebook_kernel``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kernelagent.execution.outputs import OutputCallback
from kernelagent.execution.result import ExecutionResult


class AgentComputer(Protocol):
    """A kernel that runs the agent's cells, with a workspace the host can read."""

    @property
    def workspace(self) -> Path:
        """The host directory the kernel sees as :attr:`kernel_workspace`."""
        ...

    @property
    def kernel_workspace(self) -> str:
        """The workspace's path inside the kernel (what the model is told)."""
        ...

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        manifest: bool = False,
        cell_id: str | None = None,
    ) -> ExecutionResult:
        """Run one cell; its outputs as nbformat outputs (streamed to ``on_output`` too)."""
        ...

    async def restart(self) -> None:
        """Restart the kernel (its variables are gone, the workspace stays)."""
        ...
