"""Run one cell on a kernel client and collect its nbformat v4 outputs.

Handles what a raw ``execute_interactive`` leaves to the caller: a timeout that
interrupts (and reports when the interrupt was ignored), a dead kernel noticed
while waiting, ``clear_output`` / ``update_display_data``, and a cap on the output
kept per cell so a flood of prints cannot exhaust host memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from queue import Empty
from typing import Any, Literal

from jupyter_client.asynchronous.client import AsyncKernelClient
from nbformat import ValidationError
from nbformat.v4 import output_from_msg
from pydantic import BaseModel, Field

from kernelagent.events import NotebookOutput

DEFAULT_OUTPUT_LIMIT = 2_000_000
"""Bytes of output kept per cell (text and base64 payloads)."""

ExecutionStatus = Literal["ok", "error", "timeout", "kernel_died"]

OutputCallback = Callable[[NotebookOutput], None]
DeathCheck = Callable[[], Awaitable[str | None]]
"""Returns None while the kernel lives, else why it died."""
Interrupt = Callable[[], Awaitable[None]]

MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, ValidationError)
"""What parsing a malformed or forged kernel message raises (JSONDecodeError is a ValueError)."""

_LIVENESS_POLL_SECONDS = 1.0
_DRAIN_SECONDS = 0.5
"""After the execute_reply, how long iopub must stay quiet before the cell counts as done."""
_REPLY_SECONDS = 10.0
_OUTPUT_OVERHEAD = 200
"""Bytes charged per output on top of its payload, so floods of empty outputs are capped too."""


class ExecutionResult(BaseModel):
    status: ExecutionStatus
    outputs: list[NotebookOutput] = Field(default_factory=list)
    execution_count: int | None = None
    started_at: float
    finished_at: float
    truncated: bool = False
    dropped_bytes: int = 0
    detail: str = ""
    interrupt_ignored: bool = False
    """The kernel did not stop on interrupt after a timeout; the caller must restart it."""
    user_expressions: dict[str, Any] = Field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def text(self) -> str:
        """Plain text of all outputs, as a person would read them."""
        parts: list[str] = []
        for output in self.outputs:
            kind = output["output_type"]
            if kind == "stream":
                parts.append(output["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(output.get("data", {}).get("text/plain", ""))
            elif kind == "error":
                parts.append("\n".join(output.get("traceback", [])))
        return "".join(part if part.endswith("\n") else part + "\n" for part in parts if part)


def _payload_size(output: NotebookOutput) -> int:
    if output["output_type"] == "stream":
        return len(output["text"]) + _OUTPUT_OVERHEAD
    if output["output_type"] == "error":
        traceback = sum(len(line) for line in output.get("traceback", []))
        return traceback + len(output.get("evalue", "")) + _OUTPUT_OVERHEAD
    data = output.get("data", {})
    return sum(len(v) if isinstance(v, str) else len(str(v)) for v in data.values()) + _OUTPUT_OVERHEAD


class _OutputCollector:
    """Applies iopub messages to a list of outputs the way a notebook frontend does."""

    def __init__(self, limit: int, on_output: OutputCallback | None) -> None:
        self.outputs: list[NotebookOutput] = []
        self.limit = limit
        self.kept = 0
        self.dropped = 0
        self.on_output = on_output
        self._clear_pending = False
        self._display_index: dict[str, list[int]] = {}

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if kind == "update_display_data":
            self._update_display(content)
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        if self._clear_pending:
            self._clear()
        output = output_from_msg(msg)
        self._append(output, display_id=content.get("transient", {}).get("display_id"))

    def _clear(self) -> None:
        self._clear_pending = False
        self.outputs.clear()
        self._display_index.clear()
        self.kept = 0

    def _append(self, output: NotebookOutput, display_id: str | None) -> None:
        size = _payload_size(output)
        if self.kept + size > self.limit:
            if output["output_type"] == "stream" and self.kept < self.limit:
                room = self.limit - self.kept
                self.dropped += size - room
                output["text"] = output["text"][:room]
                size = room
            else:
                self.dropped += size
                return
        self.kept += size
        if self.on_output is not None:
            self.on_output(output)
        last = self.outputs[-1] if self.outputs else None
        if (
            output["output_type"] == "stream"
            and last is not None
            and last["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            last["text"] += output["text"]
            return
        if display_id:
            self._display_index.setdefault(display_id, []).append(len(self.outputs))
        self.outputs.append(output)

    def _update_display(self, content: dict[str, Any]) -> None:
        display_id = content.get("transient", {}).get("display_id")
        for index in self._display_index.get(display_id, []):
            self.outputs[index]["data"] = content.get("data", {})
            self.outputs[index]["metadata"] = content.get("metadata", {})

    def result(self, status: ExecutionStatus, started_at: float, **fields: Any) -> ExecutionResult:
        """The cell's result with the outputs kept so far."""
        self.finish()
        return ExecutionResult(
            status=status,
            outputs=self.outputs,
            started_at=started_at,
            finished_at=time.time(),
            truncated=bool(self.dropped),
            dropped_bytes=self.dropped,
            **fields,
        )

    def finish(self) -> None:
        if self.dropped:
            note = (
                f"\n[kernelagent: output truncated: kept {self.kept} bytes, "
                f"dropped {self.dropped} bytes over the {self.limit}-byte cap]\n"
            )
            self.outputs.append({"output_type": "stream", "name": "stderr", "text": note})


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
) -> ExecutionResult:
    """Execute ``code`` and wait for it to finish, time out, or kill the kernel.

    The cell is done at its ``idle`` status on iopub, or, since iopub may drop messages
    under a flood, when its ``execute_reply`` has arrived and iopub has gone quiet. On
    timeout the kernel is interrupted; if it is still busy ``interrupt_grace`` seconds
    later the result says ``interrupt_ignored`` and the caller restarts it. Messages
    that do not parse (the code in the kernel can write to its own sockets) are dropped.
    """
    started_at = time.time()
    collector = _OutputCollector(output_limit, on_output)
    if "\x00" in code:
        return collector.result("error", started_at, detail="the code contains a NUL byte; remove it")
    # stop_on_error=False: a failed cell must not make the kernel abort the next request.
    msg_id = client.execute(
        code,
        allow_stdin=False,
        store_history=True,
        user_expressions=user_expressions or {},
        stop_on_error=False,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    status: ExecutionStatus = "ok"
    details: list[str] = []
    execution_count: int | None = None
    reply: dict[str, Any] | None = None
    dropped_messages = 0

    while True:
        wait = _LIVENESS_POLL_SECONDS if reply is None else _DRAIN_SECONDS
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        try:
            msg = await client.get_iopub_msg(timeout=wait)
        except (Empty, asyncio.TimeoutError):
            if reply is not None:
                break  # replied, and iopub is quiet: its idle status was dropped
            if deadline is not None and time.monotonic() >= deadline:
                if timed_out:
                    return collector.result(
                        "timeout",
                        started_at,
                        detail=f"timed out after {timeout:g} s and ignored the interrupt",
                        interrupt_ignored=True,
                    )
                timed_out = True
                status = "timeout"
                details.append(f"timed out after {timeout:g} s; interrupted")
                if interrupt is not None:
                    await interrupt()
                deadline = time.monotonic() + interrupt_grace
                continue
            reply = await _shell_reply(client, msg_id, timeout=0)
            if reply is not None:
                continue
            if check_death is not None:
                reason = await check_death()
                if reason is not None:
                    return collector.result("kernel_died", started_at, detail=reason)
            continue
        except MALFORMED:  # a message that does not parse
            dropped_messages += 1
            continue
        try:
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status":
                if msg["content"]["execution_state"] == "idle":
                    break
            elif kind == "execute_input":
                execution_count = msg["content"].get("execution_count")
            else:
                if kind == "error" and not timed_out:
                    status = "error"
                collector.handle(msg)
        except MALFORMED:  # a forged or malformed message; errors of the callbacks propagate
            dropped_messages += 1

    if reply is None:
        reply = await _shell_reply(client, msg_id, timeout=_REPLY_SECONDS)
    expressions: dict[str, Any] = {}
    if reply is None:
        if not timed_out:
            status = "error"
        details.append("the kernel sent no execute_reply for this cell")
    else:
        content = reply.get("content", {})
        execution_count = content.get("execution_count", execution_count)
        expressions = content.get("user_expressions") or {}
        if content.get("status") == "error" and not timed_out:
            status = "error"
        elif content.get("status") == "aborted":
            status = "error"
            details.append("the kernel aborted the request")
    if dropped_messages:
        details.append(f"{dropped_messages} malformed kernel message(s) dropped")
    return collector.result(
        status,
        started_at,
        execution_count=execution_count,
        detail="; ".join(details),
        user_expressions=expressions,
    )


async def _shell_reply(client: AsyncKernelClient, msg_id: str, timeout: float) -> dict[str, Any] | None:
    """The execute_reply for ``msg_id``, if it comes within ``timeout``; replies to
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
