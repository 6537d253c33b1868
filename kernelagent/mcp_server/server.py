"""The MCP server (the official SDK's FastMCP) and its two transports: stdio, and
streamable HTTP on 127.0.0.1 behind a bearer token. Every connection gets its own
:class:`~kernelagent.mcp_server.session_host.McpSession` from the server's lifespan (the
SDK enters it once per stdio run and once per streamable-HTTP session)."""

import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import nbformat
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.stdio import stdio_server
from mcp.types import CallToolResult, ImageContent, TextContent

from kernelagent.errors import describe
from kernelagent.mcp_server import files
from kernelagent.mcp_server.session_host import CallResult, McpServerOptions, McpSession

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "kernelagent: a persistent Jupyter kernel (Python with numpy, pandas, matplotlib) in a "
    "hardened sandbox with no network, recorded as a notebook while you work. Variables persist "
    "between python calls; files live in the workspace (/workspace in the kernel). Plots come "
    "back as images. Some actions may need a person's approval: the result then says how."
)

NOTEBOOK_URI = "kernelagent://session/notebook"
INFO_URI = "kernelagent://session/info"


def build_server(options: McpServerOptions) -> FastMCP:
    @asynccontextmanager
    async def per_connection(_: FastMCP) -> AsyncIterator[McpSession]:
        host = McpSession(options)
        try:
            yield host
        finally:
            try:
                await host.close()
            except Exception:
                log.exception("closing the kernelagent session failed")

    server = FastMCP(
        "kernelagent", instructions=INSTRUCTIONS, lifespan=per_connection, log_level="WARNING"
    )

    def connection(ctx: Context) -> tuple[McpSession, str]:
        params = ctx.request_context.session.client_params
        client = params.clientInfo.name if params is not None else "mcp-client"
        return ctx.request_context.lifespan_context, client

    @server.tool()
    async def python(code: str, ctx: Context) -> CallToolResult:
        """Run Python code as a new cell in the session's persistent Jupyter kernel.
        Variables, imports and files persist between calls; the last expression's value is
        shown; matplotlib plots come back as images. Returns the cell's output and errors."""
        host, client = connection(ctx)
        return await _answer(lambda: host.run_code("python", code, client))

    @server.tool()
    async def shell(command: str, ctx: Context, timeout: float | None = None) -> CallToolResult:
        """Run a bash command in the same sandbox (same workspace as the kernel), recorded as
        a %%bash cell. timeout: seconds before it is stopped (optional)."""
        host, client = connection(ctx)
        return await _answer(lambda: host.run_code("shell", command, client, timeout))

    @server.tool()
    async def list_files(ctx: Context, path: str = ".") -> CallToolResult:
        """List the files in the session's workspace (or a directory in it), with sizes."""
        host, client = connection(ctx)
        return await _answer(lambda: _on_workspace(host, client, files.list_files, path))

    @server.tool()
    async def read_file(path: str, ctx: Context) -> CallToolResult:
        """Read a text file from the session's workspace (a path relative to it)."""
        host, client = connection(ctx)
        return await _answer(lambda: _on_workspace(host, client, files.read_file, path))

    @server.tool()
    async def write_file(path: str, content: str, ctx: Context) -> CallToolResult:
        """Write a text file into the session's workspace (a path relative to it)."""
        host, client = connection(ctx)
        return await _answer(lambda: _write(host, client, path, content))

    @server.tool()
    async def restart(ctx: Context) -> CallToolResult:
        """Restart the kernel: variables are lost, workspace files remain."""
        host, client = connection(ctx)
        return await _answer(lambda: host.restart(client))

    @server.resource(NOTEBOOK_URI, name="session notebook", mime_type="application/x-ipynb+json")
    async def notebook() -> str:
        """The session's notebook as recorded so far (nbformat v4 JSON)."""
        host, client = connection(server.get_context())
        session = await host.get(client)
        return nbformat.writes(session.recorder.notebook)

    @server.resource(INFO_URI, name="session info", mime_type="application/json")
    async def info() -> str:
        """The session's id, status, notebook and workspace paths, and how to re-attach."""
        host, client = connection(server.get_context())
        session = await host.get(client)
        return json.dumps(
            {
                "session_id": session.id,
                "status": session.status,
                "notebook": str(session.notebook_path),
                "workspace": str(session.workspace),
                "sandbox": session.config.sandbox.kind,
                "reattach": f"kernelagent mcp --session {session.id}",
            }
        )

    return server


async def _on_workspace(
    host: McpSession, client: str, action: Callable[..., str], *arguments: str
) -> CallResult:
    session = await host.get(client)
    return CallResult(action(session.workspace, *arguments))


async def _write(host: McpSession, client: str, path: str, content: str) -> CallResult:
    session = await host.get(client)
    policy = session.config.approval
    reason = policy.reason("write_file", f"write_file {path}\n{content}")
    if reason is not None:
        return CallResult(
            f"write_file refused: this session's approval rules cover it ({reason}); write the "
            "file from the python tool instead, whose cells go through approval",
            is_error=True,
        )
    return CallResult(files.write_file(session.workspace, path, content))


async def _answer(call: Callable[[], Awaitable[CallResult]]) -> CallToolResult:
    """The call's result as MCP content; kernelagent errors become an error result."""
    try:
        result = await call()
    except Exception as error:  # the message (and hint) is what the client can act on
        message, hint = describe(error)
        if not message:
            message = error.__class__.__name__
        log.debug("tool call failed", exc_info=True)
        text = message + (f"\nhint: {hint}" if hint else "")
        return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)
    content: list[Any] = [TextContent(type="text", text=result.text)]
    content += [
        ImageContent(type="image", data=image.data_base64, mimeType=image.media_type)
        for image in result.images
    ]
    return CallToolResult(content=content, isError=result.is_error)


async def serve_stdio(options: McpServerOptions) -> None:
    """What ``FastMCP.run_stdio_async`` does, with the protocol on a private copy of stdout."""
    protocol = anyio.wrap_file(_take_stdout())
    lowlevel = build_server(options)._mcp_server
    async with stdio_server(stdout=protocol) as (read, write):
        await lowlevel.run(read, write, lowlevel.create_initialization_options())


def _take_stdout() -> TextIO:
    """A copy of file descriptor 1 for the JSON-RPC stream; fd 1 itself then points at
    stderr, so nothing else that writes to stdout (a ``--sandbox local`` kernel this process
    starts, a library's print) can corrupt the protocol."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return protocol


async def serve_http(options: McpServerOptions, port: int, token: str) -> None:
    """Streamable HTTP at http://127.0.0.1:PORT/mcp; loopback only, bearer token required."""
    import uvicorn

    from kernelagent.mcp_server.http_auth import BearerTokenAuth

    server = build_server(options)
    app = BearerTokenAuth(server.streamable_http_app(), token)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


__all__ = ["build_server", "serve_http", "serve_stdio"]
