"""The reasoning loop: model turn -> tool calls -> cells in the kernel -> feedback -> ...

The loop knows nothing of notebooks or terminals: it emits typed events and the
session's subscribers (recorder, CLI, WebSocket) do the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kernelagent.agent import prompts
from kernelagent.agent.feedback import build_feedback
from kernelagent.agent.model import Conversation, ImagePart, Model, ModelTurn, ToolCall
from kernelagent.agent.tools import TOOLS, Action, ToolArgumentError, parse_call
from kernelagent.events import (
    AssistantText,
    AssistantTextDelta,
    CellFinished,
    CellOutput,
    CellStarted,
    Error,
    Event,
    KernelRestarted,
    SessionStatus,
    Usage,
    UsageUpdated,
)
from kernelagent.execution import ExecutionResult
from kernelagent.manifest import as_list, parse_expression
from kernelagent.sandbox.sandbox import Sandbox, shell_cell

Emit = Callable[[Event], Event]
KernelRecovery = Callable[[], Awaitable[str]]
"""Brings a dead kernel back; returns a sentence for the model on what was restored."""


@dataclass
class LoopLimits:
    max_steps: int = 30
    """Model calls per instruction."""
    cell_timeout: float = 300.0
    shell_timeout: float = 120.0
    max_tokens: int | None = None
    """Input + output tokens over the whole session."""
    max_cost: float | None = None
    """US dollars over the whole session, priced with ``price_per_million``."""
    price_per_million: tuple[float, float] | None = None
    """(input, output) dollars per million tokens."""
    max_idle_turns: int = 3
    """Consecutive turns with no usable tool call before giving up."""
    max_kernel_deaths: int = 3


@dataclass
class Outcome:
    status: SessionStatus
    answer: str | None = None
    reason: str = ""


@dataclass
class LoopState:
    """What the loop accumulates; stored with the session so it can continue."""

    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    cells: int = 0
    kernel_deaths: int = 0


class AgentLoop:
    def __init__(
        self,
        model: Model,
        sandbox: Sandbox,
        conversation: Conversation,
        emit: Emit,
        *,
        limits: LoopLimits | None = None,
        state: LoopState | None = None,
        recover_kernel: KernelRecovery | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.sandbox = sandbox
        self.conversation = conversation
        self.emit = emit
        self.limits = limits or LoopLimits()
        self.state = state or LoopState()
        self.recover_kernel = recover_kernel or self._restart_kernel
        self.checkpoint = checkpoint or (lambda: None)
        """Called before every model call, so the stored conversation is never behind."""
        self.current_cell: str | None = None
        self.current_outputs: list[dict] = []
        self.current_started = 0.0
        self._last_death = ""

    async def run(self, instruction: str) -> Outcome:
        """Work on ``instruction`` until an answer, a limit, or a failure."""
        self.conversation.add_user(instruction)
        idle_turns = 0
        for _ in range(self.limits.max_steps):
            if (stop := self._budget_exhausted()) is not None:
                return stop
            self.checkpoint()
            turn = await self.model.turn(self.conversation, TOOLS, on_text_delta=self._delta)
            self.state.steps += 1
            self._account(turn)
            self.conversation.add_assistant(turn)
            if turn.text.strip():
                self.emit(AssistantText(text=turn.text))
            if not turn.tool_calls:
                idle_turns += 1
                if idle_turns >= self.limits.max_idle_turns:
                    return Outcome(
                        "failed", reason=f"the model made no tool call in {idle_turns} turns"
                    )
                self.conversation.add_user(prompts.NO_ACTION_NUDGE)
                continue
            answer, usable = await self._run_calls(turn.tool_calls)
            if answer is not None:
                return Outcome("completed", answer=answer)
            idle_turns = 0 if usable else idle_turns + 1
            if idle_turns >= self.limits.max_idle_turns:
                return Outcome(
                    "failed", reason=f"{idle_turns} turns in a row had only unusable tool calls"
                )
            if self.state.kernel_deaths > self.limits.max_kernel_deaths:
                return Outcome(
                    "failed",
                    reason=f"the kernel died {self.state.kernel_deaths} times; the last: {self._last_death}",
                )
        return Outcome(
            "paused", reason=f"reached the step limit ({self.limits.max_steps}) without an answer"
        )

    # -- one turn's tool calls -------------------------------------------------------

    async def _run_calls(self, calls: list[ToolCall]) -> tuple[str | None, bool]:
        answer: str | None = None
        usable = False
        for call in calls:
            try:
                action = parse_call(call)
            except ToolArgumentError as error:
                self.emit(Error(message=f"unusable tool call {call.name}: {error}"))
                self.conversation.add_tool_result(call.id, f"[tool error] {error}")
                continue
            usable = True
            if action.kind == "final_answer":
                answer = action.text
                self.conversation.add_tool_result(call.id, "[answer recorded]")
                continue
            await self._run_cell(call, action)
        return answer, usable

    async def _run_cell(self, call: ToolCall, action: Action) -> ExecutionResult:
        cell_id = uuid.uuid4().hex[:12]
        source = action.text if action.kind == "python" else shell_cell(action.text)
        self.current_cell, self.current_outputs, self.current_started = cell_id, [], time.time()
        self.emit(CellStarted(cell_id=cell_id, tool_call_id=call.id, kind=action.kind, code=source))
        timeout = (
            self.limits.cell_timeout
            if action.kind == "python"
            else min(action.timeout or self.limits.shell_timeout, self.limits.cell_timeout)
        )
        result = await self.sandbox.execute(
            source,
            timeout=timeout,
            on_output=lambda output: self._output(cell_id, output),
            manifest=True,
        )
        manifest = parse_expression(result.user_expressions)
        self.state.cells += 1
        self.current_cell = None
        self.emit(
            CellFinished(
                cell_id=cell_id,
                status=result.status,
                outputs=result.outputs,
                execution_count=result.execution_count,
                started_at=result.started_at,
                finished_at=result.finished_at,
                truncated=result.truncated,
                detail=result.detail,
                manifest=as_list(manifest) if manifest is not None else None,
            )
        )
        feedback = build_feedback(
            result,
            images_as_input=self.model.supports_images,
            image_dir=self.sandbox.workspace / "figures",
            image_dir_in_kernel=f"{self.sandbox.kernel_workspace}/figures",
            cell_label=f"cell-{self.state.cells}",
        )
        text = feedback.text
        if result.status == "kernel_died":
            self.state.kernel_deaths += 1
            self._last_death = result.detail
            restored = await self.recover_kernel()
            self.emit(KernelRestarted(reason=result.detail))
            text += "\n" + prompts.KERNEL_DIED.format(reason=result.detail, restored=restored)
        images = [ImagePart(media_type=media, data_base64=data) for media, data in feedback.images]
        self.conversation.add_tool_result(call.id, text, images)
        return result

    def _output(self, cell_id: str, output: dict) -> None:
        self.current_outputs.append(output)
        self.emit(CellOutput(cell_id=cell_id, output=output))

    def interrupted_cell_event(self) -> CellFinished | None:
        """The end of the cell that was running when the session was stopped, if any."""
        if self.current_cell is None:
            return None
        return CellFinished(
            cell_id=self.current_cell,
            status="interrupted",
            outputs=merge_streams(self.current_outputs),
            started_at=self.current_started,
            finished_at=time.time(),
            detail="stopped by the user while running",
        )

    async def _restart_kernel(self) -> str:
        await self.sandbox.restart()
        return "its variables are gone, so re-create what you need (files in the workspace remain)."

    # -- accounting --------------------------------------------------------------------

    def _delta(self, text: str) -> None:
        self.emit(AssistantTextDelta(delta=text))

    def _account(self, turn: ModelTurn) -> None:
        self.state.usage = self.state.usage + turn.usage
        self.emit(UsageUpdated(usage=turn.usage, total=self.state.usage))

    def cost(self) -> float | None:
        if self.limits.price_per_million is None:
            return None
        price_in, price_out = self.limits.price_per_million
        usage = self.state.usage
        return (usage.input_tokens * price_in + usage.output_tokens * price_out) / 1e6

    def _budget_exhausted(self) -> Outcome | None:
        usage = self.state.usage
        if self.limits.max_tokens is not None and usage.total_tokens >= self.limits.max_tokens:
            return Outcome(
                "paused",
                reason=f"token budget reached ({usage.total_tokens} of {self.limits.max_tokens})",
            )
        cost = self.cost()
        if self.limits.max_cost is not None and cost is not None and cost >= self.limits.max_cost:
            return Outcome(
                "paused", reason=f"cost budget reached (${cost:.4f} of ${self.limits.max_cost:.2f})"
            )
        return None


def merge_streams(outputs: list[dict]) -> list[dict]:
    """Join consecutive chunks of the same stream, as a notebook shows them."""
    merged: list[dict] = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and output["output_type"] == last["output_type"] == "stream"
            and output["name"] == last["name"]
        ):
            merged[-1] = {**last, "text": last["text"] + output["text"]}
        else:
            merged.append(dict(output))
    return merged


def workspace_files(workspace: Path, limit: int = 30) -> list[str]:
    """Names of the files the task starts with, for the system prompt."""
    names = sorted(
        str(path.relative_to(workspace))
        for path in workspace.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(workspace).parts)
    )
    return names[:limit] + ([f"... and {len(names) - limit} more"] if len(names) > limit else [])
