"""Drive ``kernelagent mcp`` with the MCP SDK's own client, over stdio and streamable HTTP.

An SDK client session is an anyio context: it must be entered and left in one task, while a
module-scoped fixture is set up and torn down in different ones. So a background task holds
each connection open and the tests call through it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import AnyUrl

from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.session.store import SessionStore

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-kernelagent-test-host-secret"
"""Set in the server's environment; must never reach the kernel."""


def server_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KERNELAGENT_HOME": str(home),
        "KERNELAGENT_POOL": "0",
        "OPENAI_API_KEY": SECRET,
    }


def mcp_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "kernelagent.cli", "mcp", *options]


@asynccontextmanager
async def stdio_session(home: Path, log: IO[str], *options: str) -> AsyncIterator[ClientSession]:
    command, *args = mcp_command(*options)
    params = StdioServerParameters(command=command, args=args, env=server_env(home), cwd=REPO)
    async with (
        stdio_client(params, errlog=log) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(120, read=300)
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


class Connection:
    """An SDK client session held open by a background task."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[ClientSession]]) -> None:
        self._opener = opener
        self._leave = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.session: ClientSession | None = None

    async def __aenter__(self) -> Connection:
        ready = asyncio.Event()

        async def hold() -> None:
            async with self._opener() as session:
                self.session = session
                ready.set()
                await self._leave.wait()

        self._task = asyncio.create_task(hold())
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()  # the server did not start: raise why
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._leave.set()
        if self._task is not None:
            await self._task

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        assert self.session is not None
        return await self.session.call_tool(tool, arguments)

    async def read(self, uri: str) -> str:
        assert self.session is not None
        result = await self.session.read_resource(AnyUrl(uri))
        content = result.contents[0]
        return getattr(content, "text", "")


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def images_of(result: CallToolResult) -> list[bytes]:
    return [
        base64.b64decode(block.data) for block in result.content if isinstance(block, ImageContent)
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def stop_sandboxes(home: Path) -> None:
    """The sandboxes the sessions of this store kept for re-attaching: stopped after a test."""
    for record in SessionStore(home).list():
        if record.sandbox_state:
            with contextlib.suppress(Exception):
                sandbox = await Sandbox.attach(record.sandbox_state)
                await sandbox.shutdown()
