"""MCP servers' tools as host tools of kernelagent's own agent (the ``mcp_tools`` provider).

Each configured server (see :mod:`kernelagent.session.mcp_servers`) is started or
connected on the host, by this process, with the official SDK's client: never inside the
sandbox or its network namespace. Its tools are offered to the model beside python/shell
(prefixed ``<server>_`` only when a name is taken); calls go through the session's
approval rules and are recorded by the host-tool wiring. Each connection is held by a task
of its own (the SDK's clients are anyio contexts, to be left by the task that entered
them) and closed through the toolbox's exit stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kernelagent.agent.host_tools import HostToolError, HostToolResult, HostTools
from kernelagent.agent.model import ImagePart, ToolSpec
from kernelagent.errors import KernelAgentError
from kernelagent.session.mcp_servers import McpServerSpec, configured_servers

if TYPE_CHECKING:
    from mcp import ClientSession

    from kernelagent.session.host_tool_setup import HostToolContext

CONNECT_TIMEOUT = 60.0


class McpServerUnavailableError(KernelAgentError, RuntimeError):
    pass


class McpTool:
    """One tool of one MCP server, as the loop calls host tools."""

    def __init__(
        self, client: ClientSession, server: str, tool: Any, name: str, timeout: float
    ) -> None:
        self._client = client
        self._tool_name = tool.name
        self._timeout = timeout
        self.server = server
        self._spec = ToolSpec(
            name=name,
            description=(tool.description or tool.name) + f" (from the MCP server {server!r})",
            parameters=tool.inputSchema or {"type": "object", "properties": {}},
        )

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    @property
    def source(self) -> str:
        return f"mcp:{self.server}"

    async def call(self, arguments: dict[str, Any]) -> HostToolResult:
        from mcp.shared.exceptions import McpError

        try:
            result = await self._client.call_tool(
                self._tool_name, arguments, read_timeout_seconds=timedelta(seconds=self._timeout)
            )
        except McpError as error:
            raise HostToolError(
                f"the MCP server {self.server!r} refused {self._tool_name}: {error.error.message}"
            ) from None
        except (OSError, EOFError, RuntimeError) as error:
            raise HostToolError(
                f"the MCP server {self.server!r} is not reachable ({type(error).__name__})",
                "the session's other tools still work",
            ) from None
        return as_host_result(result, self.server, self._tool_name)


def as_host_result(result: Any, server: str, tool: str) -> HostToolResult:
    texts: list[str] = []
    images: list[ImagePart] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        elif kind == "image":
            images.append(ImagePart(media_type=block.mimeType, data_base64=block.data))
        elif kind == "resource" and hasattr(block.resource, "text"):
            texts.append(block.resource.text)
        elif kind == "resource_link":
            texts.append(f"[resource {block.uri}]")
        else:
            texts.append(f"[{kind or 'content'} omitted]")
    if not texts and result.structuredContent is not None:
        texts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return HostToolResult(
        text="\n".join(texts) or "(no output)",
        images=images,
        is_error=bool(result.isError),
        metadata={"server": server, "tool": tool},
    )


async def mcp_tools(context: HostToolContext, tools: HostTools) -> None:
    """The provider: every server the session's config names, its tools added to ``tools``."""
    config = context.config
    specs = configured_servers(config.mcp_servers, config.mcp_config)
    for spec in specs:
        log = context.notebook_path.parent / f"mcp-{spec.name}.log"
        client = await _connect(spec, tools, log)
        listed = await client.list_tools()
        for tool in listed.tools:
            name = tool.name
            if name in {"python", "shell", "final_answer"} or tools.get(name) is not None:
                name = f"{spec.name}_{tool.name}"
            tools.add(McpTool(client, spec.name, tool, name, config.limits.cell_timeout))


async def _connect(spec: McpServerSpec, tools: HostTools, log: Path) -> ClientSession:
    """Open the client session in a task of its own; its close is pushed onto the stack.
    A stdio server's stderr goes to ``log`` (beside the session notebook)."""
    try:
        from mcp import ClientSession
    except ImportError:
        raise McpServerUnavailableError(
            "MCP servers are configured but the MCP SDK is not installed",
            "pip install 'kernelagent[mcp]'",
        ) from None
    ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
    leave = asyncio.Event()

    async def hold() -> None:
        with open(log, "a") as errlog:
            async with (
                _transport(spec, errlog) as streams,
                ClientSession(streams[0], streams[1]) as client,
            ):
                await client.initialize()
                ready.set_result(client)
                await leave.wait()

    holder = asyncio.create_task(hold(), name=f"mcp-client-{spec.name}")
    holder.add_done_callback(lambda task: _fail_waiter(task, ready))
    try:
        client = await asyncio.wait_for(asyncio.shield(ready), CONNECT_TIMEOUT)
    except Exception as error:
        leave.set()
        holder.cancel()
        with contextlib.suppress(BaseException):
            await holder
        raise McpServerUnavailableError(
            f"the MCP server {spec.name!r} ({spec.describe()}) did not start: {_reason(error)}",
            f"check the command or URL (its log: {log}), or leave out --mcp-server",
        ) from None

    async def close() -> None:
        leave.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(holder, 10)

    tools.exit_stack.push_async_callback(close)
    return client


def _fail_waiter(task: asyncio.Task[None], ready: asyncio.Future[Any]) -> None:
    if ready.done():
        return
    if task.cancelled():
        ready.cancel()
    else:
        ready.set_exception(task.exception() or EOFError("the server closed the connection"))


def _reason(error: BaseException) -> str:
    while getattr(error, "exceptions", None):  # an anyio task group's ExceptionGroup
        error = error.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(error, TimeoutError):
        return f"no answer in {CONNECT_TIMEOUT:.0f} s"
    return f"{type(error).__name__}: {error}"


def _transport(spec: McpServerSpec, errlog: TextIO) -> Any:
    if spec.transport == "stdio":
        from mcp import StdioServerParameters
        from mcp.client.stdio import get_default_environment, stdio_client

        env = {**get_default_environment(), **spec.env}
        params = StdioServerParameters(command=spec.command, args=spec.args, env=env, cwd=spec.cwd)
        return stdio_client(params, errlog=errlog)
    if spec.transport == "sse":
        from mcp.client.sse import sse_client

        return sse_client(spec.url, headers=spec.headers or None)
    return _http_transport(spec)


@contextlib.asynccontextmanager
async def _http_transport(spec: McpServerSpec) -> Any:
    import httpx
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx.AsyncClient(headers=spec.headers, timeout=httpx.Timeout(30, read=300)) as http,
        streamable_http_client(spec.url, http_client=http) as (read, write, _),
    ):
        yield read, write
