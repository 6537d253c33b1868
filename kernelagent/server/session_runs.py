"""The background tasks that run the server's sessions, and stopping them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from kernelagent.events import SessionFinished
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.server.errors import describe_error
from kernelagent.server.event_log import ServerEventStream, SessionEntry
from kernelagent.session.store import SessionNotFoundError, SessionStore


class SessionRuns:
    """Runs sessions in tasks of the server's event loop; failures become events."""

    def __init__(self, store: SessionStore, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self,
        stream: ServerEventStream,
        run: Coroutine[Any, Any, Any],
        name: str,
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._drive(stream, run), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drive(self, stream: ServerEventStream, run: Coroutine[Any, Any, Any]) -> Any:
        """Run a session to its stop; failures after it exists become events."""
        try:
            return await run
        except asyncio.CancelledError:
            if stream.attached and not stream.finished:
                stream.emit(
                    SessionFinished(status="interrupted", reason="stopped before the session ran")
                )
            raise
        except Exception as error:  # reported to the client as events
            if not stream.attached:
                raise  # no session yet: the request that started it answers with the error
            self.log.warning("kernelagent: session %s stopped with %r", stream.session_id, error)
            if not stream.error_reported:
                stream.report(error)
            if not stream.finished:
                message, _ = describe_error(error)
                stream.emit(SessionFinished(status="failed", reason=message))
            return None

    async def shutdown(self, entries: list[SessionEntry], timeout: float) -> None:
        """Cancel the running sessions, then shut down the sandboxes of those run here."""
        tasks = list(self._tasks)
        winding_down = {entry.task for entry in entries if entry.finishing}
        for task in tasks:
            if task not in winding_down:  # those only close their sandbox and model client
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for entry in entries:
            if entry.ran_here:
                await self._stop_sandbox(entry)

    async def _stop_sandbox(self, entry: SessionEntry) -> None:
        try:
            record = self.store.get(entry.id)
        except SessionNotFoundError:
            return
        if not record.sandbox_state:
            return
        try:
            session = entry.stream.session if entry.stream else None
            if session is not None:
                await asyncio.wait_for(session.sandbox.shutdown(), timeout=30)
            else:
                sandbox = await asyncio.wait_for(Sandbox.attach(record.sandbox_state), timeout=30)
                await asyncio.wait_for(sandbox.shutdown(), timeout=30)
        except Exception as error:  # gone already or unreachable: fix the record
            self.log.info("kernelagent: sandbox of %s: %s", entry.id, error)
        try:
            self.store.update(entry.id, sandbox_state=None)
        except Exception:
            self.log.exception("kernelagent: cannot update session %s", entry.id)
