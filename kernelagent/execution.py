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

_LIVENESS_POLL_SECONDS = 1.0


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
        return len(output["text"])
    if output["output_type"] == "error":
        return sum(len(line) for line in output.get("traceback", [])) + len(output.get("evalue", ""))
    return sum(len(v) if isinstance(v, str) else len(str(v)) for v in output.get("data", {}).values())


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

    On timeout the kernel is interrupted; if it is still busy ``interrupt_grace``
    seconds later the result says ``interrupt_ignored`` and the caller restarts it.
    """
    started_at = time.time()
    collector = _OutputCollector(output_limit, on_output)
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
    detail = ""
    execution_count: int | None = None

    while True:
        wait = _LIVENESS_POLL_SECONDS
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        try:
            msg = await client.get_iopub_msg(timeout=wait)
        except (Empty, asyncio.TimeoutError):
            if deadline is not None and time.monotonic() >= deadline:
                if timed_out:
                    return collector.result(
                        "timeout",
                        started_at,
                        detail=f"timed out after {timeout:g} s and ignored the interrupt",
                        interrupt_ignored=True,
                    )
                timed_out = True
                status, detail = "timeout", f"timed out after {timeout:g} s; interrupted"
                if interrupt is not None:
                    await interrupt()
                deadline = time.monotonic() + interrupt_grace
                continue
            if check_death is not None:
                reason = await check_death()
                if reason is not None:
                    return collector.result("kernel_died", started_at, detail=reason)
            continue
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

    reply = await _shell_reply(client, msg_id)
    expressions: dict[str, Any] = {}
    if reply is not None:
        execution_count = reply["content"].get("execution_count", execution_count)
        expressions = reply["content"].get("user_expressions") or {}
        reply_status = reply["content"].get("status")
        if reply_status == "error" and not timed_out:
            status = "error"
        elif reply_status == "aborted":
            status, detail = "error", "the kernel aborted the request"
    return collector.result(
        status, started_at, execution_count=execution_count, detail=detail, user_expressions=expressions
    )


async def _shell_reply(client: AsyncKernelClient, msg_id: str) -> dict[str, Any] | None:
    """The execute_reply for ``msg_id``; replies to earlier, abandoned requests are skipped."""
    while True:
        try:
            reply = await client.get_shell_msg(timeout=10)
        except (Empty, asyncio.TimeoutError):
            return None
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply
