"""The ``remember`` and ``recall`` host tools of a session with agent memory on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelagent.agent.host_tools import HostToolError, HostToolResult, HostTools
from kernelagent.agent.model import ToolSpec
from kernelagent.errors import KernelAgentError
from kernelagent.memory.toolbox import (
    RECALL_DESCRIPTION,
    RECALL_PARAMETERS,
    REMEMBER_DESCRIPTION,
    REMEMBER_PARAMETERS,
    MemoryToolbox,
    ToolReply,
)
from kernelagent.session.memory_hooks import HASHED_FILE_LIMIT, memory_store

if TYPE_CHECKING:
    from kernelagent.session.host_tool_setup import HostToolContext

SOURCE = "memory"


@dataclass
class MemoryTool:
    spec: ToolSpec
    run: Callable[[dict[str, Any]], ToolReply]
    source: str = SOURCE

    async def call(self, arguments: dict[str, Any]) -> HostToolResult:
        try:
            reply = await asyncio.to_thread(self.run, arguments)
        except KernelAgentError as error:
            raise HostToolError(error.message, error.hint) from None
        return HostToolResult(text=reply.text, metadata=reply.metadata)


class WorkspaceToolbox(MemoryToolbox):
    """A toolbox whose inputs are the workspace's data files as they are at each call."""

    def __init__(self, workspace: Path, **options: Any) -> None:
        super().__init__(inputs=[], **options)
        self.workspace = workspace
        self._hashes: dict[tuple[str, int, int], str] = {}

    def remember(self, arguments: dict[str, Any]) -> ToolReply:
        self.inputs = self._workspace_inputs()
        return super().remember(arguments)

    def recall(self, arguments: dict[str, Any]) -> ToolReply:
        self.inputs = self._workspace_inputs()
        return super().recall(arguments)

    def _workspace_inputs(self) -> list[dict[str, Any]]:
        from kernelagent.hashing import sha256_file

        inputs = []
        for path in sorted(self.workspace.iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.name == "NOTES.md":
                continue
            stat = path.stat()
            if stat.st_size > HASHED_FILE_LIMIT:
                continue
            key = (path.name, stat.st_size, stat.st_mtime_ns)
            if key not in self._hashes:
                self._hashes[key] = sha256_file(path)
            inputs.append({"name": path.name, "sha256": self._hashes[key]})
        return inputs


async def memory_tools(context: HostToolContext, tools: HostTools) -> None:
    """Adds remember/recall when the session has agent memory."""
    store = memory_store(context.config.agent_memory, context.config.memory_project)
    if store is None:
        return
    toolbox = WorkspaceToolbox(context.workspace, store=store, session_id=context.session_id)
    tools.add(
        MemoryTool(
            ToolSpec(
                name="remember", description=REMEMBER_DESCRIPTION, parameters=REMEMBER_PARAMETERS
            ),
            toolbox.remember,
        )
    )
    tools.add(
        MemoryTool(
            ToolSpec(name="recall", description=RECALL_DESCRIPTION, parameters=RECALL_PARAMETERS),
            toolbox.recall,
        )
    )
