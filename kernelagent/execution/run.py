"""Run one cell on a kernel client: timeouts that interrupt, a dead kernel noticed
while waiting, iopub floods that drop the idle status, forged messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from queue import Empty
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from nbformat import ValidationError

from kernelagent.execution.limits import DEFAULT_OUTPUT_LIMIT
from kernelagent.execution.outputs import KernelOutputs, OutputCallback
from kernelagent.execution.result import ExecutionResult, ExecutionStatus

DeathCheck = Callable[[], Awaitable[str | None]]
"""Returns None while the kernel lives, else why it died."""
Interrupt = Callable[[], Awaitable[None]]

MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, ValidationError)
"""What parsing a malformed or forged kernel message raises (JSONDecodeError is a ValueError)."""

LIVENESS_POLL_SECONDS = 1.0
DRAIN_SECONDS = 0.5
"""After the execute_reply, how long iopub must stay quiet before the cell counts as done."""
REPLY_SECONDS = 10.0


async def execute(
    client: AsyncKernelClient,
    code: str,
    *,
    timeout: float | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    on_output: OutputCallback | None = None,
    check_death: DeathCheck | None = None,
    interrupt: Interrupt | None = None,
    interrupt_grace: float = 5.0,
    user_expressions: dict[str, str] | None = None,
    outputs: KernelOutputs | None = None,
    cell_id: str | None = None,
) -> ExecutionResult:
    """Execute ``code`` and wait for it to finish, time out, or kill the kernel.

    The cell is done at its ``idle`` status on iopub, or, since iopub may drop messages
    under a flood, when its ``execute_reply`` has arrived and iopub has gone quiet. On
    timeout the kernel is interrupted; if it is still busy ``interrupt_grace`` seconds
    later the result says ``interrupt_ignored`` and the caller restarts it. Messages
    that do not parse (the code in the kernel can write to its own sockets) are dropped.

    ``outputs`` holds the earlier cells of this kernel, so that a display id created
    there and updated here updates them too (``ExecutionResult.display_updates``);
    ``cell_id`` names this cell in it.
    """
    outputs = outputs if outputs is not None else KernelOutputs()
    outputs.start_cell(cell_id or uuid.uuid4().hex, client, output_limit, on_output)
    run = _CellRun(client, outputs, timeout, check_death, interrupt, interrupt_grace)
    if "\x00" in code:
        return run.result("error", detail="the code contains a NUL byte; remove it")
    # stop_on_error=False: a failed cell must not make the kernel abort the next request.
    run.msg_id = client.execute(
        code,
        allow_stdin=False,
        store_history=True,
        user_expressions=user_expressions or {},
        stop_on_error=False,
    )
    ignored = await run.wait_until_idle()
    if ignored is not None:
        return ignored
    return await run.conclude()


class _CellRun:
    """The state of one cell while ``execute`` waits for it."""

    def __init__(
        self,
        client: AsyncKernelClient,
        outputs: KernelOutputs,
        timeout: float | None,
        check_death: DeathCheck | None,
        interrupt: Interrupt | None,
        interrupt_grace: float,
    ) -> None:
        self.client, self.outputs = client, outputs
        self.timeout, self.check_death = timeout, check_death
        self.interrupt, self.interrupt_grace = interrupt, interrupt_grace
        self.started_at = time.time()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.msg_id = ""
        self.timed_out = False
        self.status: ExecutionStatus = "ok"
        self.details: list[str] = []
        self.reply: dict[str, Any] | None = None
        self.dropped_messages = 0

    async def wait_until_idle(self) -> ExecutionResult | None:
        """Consume iopub until the cell is done; a result if it has to end early."""
        while True:
            wait = LIVENESS_POLL_SECONDS if self.reply is None else DRAIN_SECONDS
            if self.deadline is not None:
                wait = max(0.0, min(wait, self.deadline - time.monotonic()))
            try:
                msg = await self.client.get_iopub_msg(timeout=wait)
            except (Empty, asyncio.TimeoutError):
                if self.reply is not None:
                    return None  # replied, and iopub is quiet: its idle status was dropped
                early = await self._on_quiet()
                if early is not None:
                    return early
                continue
            except MALFORMED:  # a message that does not parse
                self.dropped_messages += 1
                continue
            try:
                if self._on_message(msg):
                    return None
            except MALFORMED:  # a forged or malformed message; errors of the callbacks propagate
                self.dropped_messages += 1

    def _on_message(self, msg: dict[str, Any]) -> bool:
        """Apply one iopub message; True when it is this cell's idle status."""
        if msg["parent_header"].get("msg_id") != self.msg_id:
            return False
        kind = msg["msg_type"]
        if kind == "status":
            return bool(msg["content"]["execution_state"] == "idle")
        if kind == "error" and not self.timed_out:
            self.status = "error"
        self.outputs.handle(msg)
        return False

    async def _on_quiet(self) -> ExecutionResult | None:
        """Nothing on iopub for a while: time out, notice the reply or a dead kernel."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return await self._on_deadline()
        self.reply = await shell_reply(self.client, self.msg_id, timeout=0)
        if self.reply is None and self.check_death is not None:
            reason = await self.check_death()
            if reason is not None:
                return self.result("kernel_died", detail=reason)
        return None

    async def _on_deadline(self) -> ExecutionResult | None:
        if self.timed_out:
            return self.result(
                "timeout",
                detail=f"timed out after {self.timeout:g} s and ignored the interrupt",
                interrupt_ignored=True,
            )
        self.timed_out = True
        self.status = "timeout"
        self.details.append(f"timed out after {self.timeout:g} s; interrupted")
        if self.interrupt is not None:
            await self.interrupt()
        self.deadline = time.monotonic() + self.interrupt_grace
        return None

    async def conclude(self) -> ExecutionResult:
        """The result once iopub is done: the execute_reply has the last word on status."""
        if self.reply is None:
            self.reply = await shell_reply(self.client, self.msg_id, timeout=REPLY_SECONDS)
        expressions: dict[str, Any] = {}
        execution_count = self.outputs.cell.get("execution_count")
        if self.reply is None:
            if not self.timed_out:
                self.status = "error"
            self.details.append("the kernel sent no execute_reply for this cell")
        else:
            content = self.reply.get("content", {})
            execution_count = content.get("execution_count", execution_count)
            expressions = content.get("user_expressions") or {}
            if content.get("status") == "error" and not self.timed_out:
                self.status = "error"
            elif content.get("status") == "aborted":
                self.status = "error"
                self.details.append("the kernel aborted the request")
        if self.dropped_messages:
            self.details.append(f"{self.dropped_messages} malformed kernel message(s) dropped")
        return self.result(
            self.status,
            execution_count=execution_count,
            detail="; ".join(self.details),
            user_expressions=expressions,
        )

    def result(self, status: ExecutionStatus, **fields: Any) -> ExecutionResult:
        """The cell's result with the outputs kept so far."""
        outputs, updates = self.outputs.finish_cell()
        return ExecutionResult(
            status=status,
            outputs=outputs,
            started_at=self.started_at,
            finished_at=time.time(),
            truncated=bool(self.outputs.dropped),
            dropped_bytes=self.outputs.dropped,
            display_updates=updates,
            **fields,
        )


async def shell_reply(
    client: AsyncKernelClient, msg_id: str, timeout: float
) -> dict[str, Any] | None:
    """The shell reply to ``msg_id``, if it comes within ``timeout``; replies to
    earlier, abandoned requests and malformed messages are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await client.get_shell_msg(timeout=max(0.0, deadline - time.monotonic()))
        except (Empty, asyncio.TimeoutError):
            return None
        except MALFORMED:  # a message that does not parse
            continue
        if isinstance(reply, dict) and reply.get("parent_header", {}).get("msg_id") == msg_id:
            return reply
