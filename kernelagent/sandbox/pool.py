"""A warm pool of pre-started sandboxes.

A session that takes a sandbox from the pool starts without waiting for a container
and a kernel. Each pooled sandbox has its own fresh workspace and is handed out
exactly once: pooled sandboxes are never shared between sessions.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)


class SandboxPool:
    """Keeps ``size`` started sandboxes ready. Use as ``async with SandboxPool(...)``."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        size: int = 1,
        workspace_root: str | Path | None = None,
    ) -> None:
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.settings = settings or SandboxSettings()
        self.size = size
        self.workspace_root = Path(workspace_root or tempfile.mkdtemp(prefix="kernelagent-pool-"))
        self.workspace_root.mkdir(parents=True, exist_ok=True)
        self._ready: asyncio.Queue[Sandbox] = asyncio.Queue()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    async def __aenter__(self) -> SandboxPool:
        await self.fill()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def ready_count(self) -> int:
        return self._ready.qsize()

    async def fill(self) -> None:
        """Start sandboxes until ``size`` are ready or starting, and wait for them."""
        self._top_up()
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)

    def _top_up(self) -> None:
        missing = self.size - self._ready.qsize() - len(self._starting)
        for _ in range(max(0, missing)):
            task = asyncio.create_task(self._start_one())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=self.workspace_root))
        try:
            sandbox = await Sandbox.start(self.settings, workspace)
        except Exception:
            log.exception("warm pool: a sandbox failed to start")
            shutil.rmtree(workspace, ignore_errors=True)
            return
        if self._closed:
            await sandbox.shutdown()
            return
        await self._ready.put(sandbox)

    async def acquire(self) -> Sandbox:
        """A started sandbox that belongs to the caller alone; the pool refills behind it."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        try:
            sandbox = self._ready.get_nowait()
        except asyncio.QueueEmpty:
            sandbox = None
        self._top_up()
        if sandbox is not None and await sandbox.is_alive():
            return sandbox
        if sandbox is not None:
            await sandbox.shutdown()
        workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=self.workspace_root))
        return await Sandbox.start(self.settings, workspace)

    async def close(self) -> None:
        """Shut down the sandboxes still waiting in the pool (not the ones handed out)."""
        self._closed = True
        # Starting sandboxes see ``_closed`` and shut themselves down; cancelling them
        # mid-start could leave a container behind.
        await asyncio.gather(*self._starting, return_exceptions=True)
        while not self._ready.empty():
            await self._ready.get_nowait().shutdown()
