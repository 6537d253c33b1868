"""Which host tools a session gets: each provider reads its settings from the session's
config and adds its tools (or none) to the session's toolbox.

A provider is called when a session starts, is resumed or continues, so a stored config
rebuilds the same tools; whatever it opens it closes through ``tools.exit_stack``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kernelagent.agent.host_tools import HostTools
from kernelagent.session.mcp_tools import mcp_tools
from kernelagent.session.memory_tools import memory_tools

if TYPE_CHECKING:
    from kernelagent.session.session import SessionConfig


@dataclass(frozen=True)
class HostToolContext:
    session_id: str
    config: SessionConfig
    workspace: Path
    """The session's workspace on the host."""
    notebook_path: Path


HostToolProvider = Callable[[HostToolContext, HostTools], Awaitable[None]]

PROVIDERS: list[HostToolProvider] = [memory_tools, mcp_tools]
"""The providers every session asks, in order (memory, MCP servers, ...)."""


async def open_host_tools(
    context: HostToolContext, providers: list[HostToolProvider] | None = None
) -> HostTools:
    """The session's host tools; if a provider fails, what the others opened is closed."""
    tools = HostTools()
    try:
        for provider in PROVIDERS if providers is None else providers:
            await provider(context, tools)
    except BaseException:
        await tools.aclose()
        raise
    return tools
