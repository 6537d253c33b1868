"""Tools that run on the host, beside python/shell/final_answer.

The agent's memory (``remember``/``recall``) and the tools of MCP servers are host tools:
they never run inside the sandbox or its network namespace. A provider (see
``kernelagent.session.host_tool_setup``) adds them to a session's ``HostTools``; the loop
offers their specs to the model on every API path, runs their calls through the approval
rules and emits ``HostToolCalled`` / ``HostToolFinished``, which the recorder writes as
one markdown cell per call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any, Protocol

from pydantic import BaseModel, Field

from kernelagent.agent.model import ImagePart, ToolSpec
from kernelagent.errors import KernelAgentError

RESERVED_NAMES = frozenset({"python", "shell", "final_answer"})
MAX_RESULT_CHARS = 20_000
"""A longer result is cut before it reaches the model (the cut is said)."""


class HostToolError(KernelAgentError):
    """A call that cannot be made; the message goes back to the model."""


class HostToolResult(BaseModel):
    text: str
    """What the model reads."""
    images: list[ImagePart] = Field(default_factory=list)
    is_error: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Recorded with the call in the notebook."""


class HostTool(Protocol):
    @property
    def spec(self) -> ToolSpec: ...

    @property
    def source(self) -> str:
        """Who provides the tool: ``memory``, ``mcp:<server name>``."""
        ...

    async def call(self, arguments: dict[str, Any]) -> HostToolResult: ...


class HostTools:
    """A session's host tools, by name, and the cleanups of whoever provided them."""

    def __init__(self, tools: Iterable[HostTool] = ()) -> None:
        self._tools: dict[str, HostTool] = {}
        self.exit_stack = AsyncExitStack()
        """Providers push their cleanups here (an MCP client session, say)."""
        for tool in tools:
            self.add(tool)

    def add(self, tool: HostTool) -> None:
        name = tool.spec.name
        if name in RESERVED_NAMES:
            raise HostToolError(
                f"a host tool cannot be called {name!r}",
                hint="that name is kernelagent's own tool; rename the tool or its server's prefix",
            )
        if name in self._tools:
            raise HostToolError(
                f"two host tools are called {name!r} ({self._tools[name].source} and "
                f"{tool.source})",
                hint="give one of the MCP servers another name so its tools are prefixed apart",
            )
        self._tools[name] = tool

    def specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    def get(self, name: str) -> HostTool | None:
        return self._tools.get(name)

    def __len__(self) -> int:
        return len(self._tools)

    async def aclose(self) -> None:
        await self.exit_stack.aclose()


async def call_host_tool(tool: HostTool, arguments: dict[str, Any]) -> tuple[HostToolResult, float]:
    """The tool's result and how long it took; a failure becomes an error result."""
    started = time.monotonic()
    try:
        result = await tool.call(arguments)
    except HostToolError as error:
        result = HostToolResult(text=str(error), is_error=True)
    except Exception as error:  # a provider's bug must not end the session
        result = HostToolResult(
            text=f"{tool.spec.name} failed: {type(error).__name__}: {error}", is_error=True
        )
    if len(result.text) > MAX_RESULT_CHARS:
        cut = len(result.text) - MAX_RESULT_CHARS
        result = result.model_copy(
            update={"text": result.text[:MAX_RESULT_CHARS] + f"\n[... {cut} more characters]"}
        )
    return result, time.monotonic() - started


def approval_text(name: str, arguments: dict[str, Any]) -> str:
    """The text approval rules see and a person approves: the name, then the arguments."""
    return f"{name} {json.dumps(arguments, ensure_ascii=False, sort_keys=True)}"


def parse_approval_text(name: str, text: str) -> dict[str, Any]:
    """The arguments of an approved (maybe edited) call; raises HostToolError if unusable."""
    prefix = f"{name} "
    body = text[len(prefix) :] if text.startswith(prefix) else text
    try:
        arguments = json.loads(body or "{}")
    except json.JSONDecodeError as error:
        raise HostToolError(
            f"the edited call to {name} is not valid JSON ({error.msg})",
            hint=f'write it as: {name} {{"argument": "value"}}',
        ) from None
    if not isinstance(arguments, dict):
        raise HostToolError(f"the arguments of {name} must be a JSON object")
    return arguments
