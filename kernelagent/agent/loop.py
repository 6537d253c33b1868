"""The reasoning loop: model turn -> tool calls -> cells in the kernel -> feedback -> ...

The loop knows nothing of notebooks or terminals: it emits typed events and the
session's subscribers (recorder, CLI, WebSocket) do the rest.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from kernelagent.agent import prompts
from kernelagent.agent.answers import AnswerReview, RanCell
from kernelagent.agent.approval_gate import ApprovalGate
from kernelagent.agent.approvals import ApprovalPolicy, Decision, PendingApproval
from kernelagent.agent.compaction import Compactor, clip_conversation
from kernelagent.agent.computer import AgentComputer
from kernelagent.agent.feedback import build_feedback
from kernelagent.agent.hints import CellMemory, FailedCell, error_line
from kernelagent.agent.host_tools import (
    HostTools,
    approval_text,
    call_host_tool,
    parse_approval_text,
)
from kernelagent.agent.limits import LoopLimits, LoopState, Outcome, budget_exhausted
from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ImagePart,
    Model,
    ModelContextError,
    ModelTurn,
    ToolCall,
)
from kernelagent.agent.repeats import JustRan, RepeatGuard
from kernelagent.agent.tools import TOOLS, Action, ToolArgumentError, parse_call
from kernelagent.agent.workspace import merge_streams, workspace_files
from kernelagent.errors import KernelAgentError
from kernelagent.events import (
    AnswerReviewed,
    AssistantText,
    AssistantTextDelta,
    CellFinished,
    CellOutput,
    CellStarted,
    DisplayUpdated,
    Error,
    Event,
    HostToolCalled,
    HostToolFinished,
    KernelRestarted,
    UsageUpdated,
)
from kernelagent.execution.result import ExecutionResult
from kernelagent.manifest import as_list, parse_expression
from kernelagent.sandbox.sandbox import shell_cell

CONTEXT_RETRIES = 2
"""Times a turn the server found too long is compacted further and sent again."""
MIN_CONTEXT_CHARS = 2_000

Emit = Callable[[Event], Event]
KernelRecovery = Callable[[], Awaitable[str]]
"""Brings a dead kernel back; returns a sentence for the model on what was restored."""


class AgentLoop:
    def __init__(
        self,
        model: Model,
        sandbox: AgentComputer,
        conversation: Conversation,
        emit: Emit,
        *,
        limits: LoopLimits | None = None,
        state: LoopState | None = None,
        recover_kernel: KernelRecovery | None = None,
        checkpoint: Callable[[], None] | None = None,
        approval: ApprovalPolicy | None = None,
        host_tools: HostTools | None = None,
        compact: Compactor | None = None,
    ) -> None:
        self.model = model
        self.sandbox = sandbox
        self.conversation = conversation
        self.emit = emit
        self.limits = limits or LoopLimits()
        self.state = state or LoopState()
        self.recover_kernel = recover_kernel or self._restart_kernel
        self.checkpoint = checkpoint or (lambda: None)
        """Called after every change to the conversation, so the stored one is never behind."""
        self.gate = ApprovalGate(approval, emit, lambda: self.conversation)
        self.host_tools = host_tools or HostTools()
        self.tools = TOOLS + self.host_tools.specs()
        self.compact = compact or clip_conversation
        """Makes the conversation fit ``limits.context_chars`` (see agent.compaction)."""
        self.resume_note = ""
        """Told to the model once the pending tool calls have their results."""
        self.memory = CellMemory()
        self.answers = AnswerReview(
            require_evidence=self.limits.require_evidence,
            check_answers=self.limits.check_answers,
            verify_answers=self.limits.verify_answers,
            code_blocks=bool(getattr(model, "acts_with_code_blocks", False)),
        )
        self.repeats = RepeatGuard(
            self.memory, self.limits.retry_temperatures, self.limits.temperature
        )
        self.last_failure: FailedCell | None = None
        """The newest failed cell, for the nudge after a reply with no action."""
        self.answer_grounded = False
        """Whether the accepted answer appears in the outputs of this loop's cells."""
        self.resent_guess: str | None = None
        """The answer of the newest turn when it resent a guess no output shows."""
        self.current_cell: str | None = None
        self.current_outputs: list[dict] = []
        self.current_started = 0.0
        self._last_death = ""

    @property
    def pending(self) -> PendingApproval | None:
        """The action waiting for a person, if any."""
        return self.gate.pending

    @property
    def decisions(self) -> dict[str, Decision]:
        """Decisions on pending actions, by tool-call id, applied when the loop runs them."""
        return self.gate.decisions

    async def run(self, instruction: str | None = None) -> Outcome:
        """Work on ``instruction`` until an answer, a limit, a pending approval or a failure.

        With no instruction the loop carries on where the conversation stands: it first
        answers the tool calls of the last model turn that have no result yet (after an
        approval, or after the host process died).
        """
        if instruction is not None:
            self.conversation.add_user(instruction)
            self.answers.new_instruction(instruction)
        idle_turns = 0
        unanswered = self.conversation.unanswered_calls()
        if unanswered:
            outcome = await self._after_calls(unanswered, 0)
            if isinstance(outcome, Outcome):
                return outcome
        if self.resume_note:
            self.conversation.add_user(self.resume_note)
            self.resume_note = ""
        taken = 0
        while taken < self.limits.max_steps + self.answers.review_turns:
            taken += 1
            if (stop := budget_exhausted(self.limits, self.state.usage)) is not None:
                return stop
            turn = await self._model_turn()
            self.state.steps += 1
            self._account(turn)
            self.conversation.add_assistant(turn)
            self.checkpoint()
            if turn.text.strip():
                self.emit(AssistantText(text=turn.text))
            if not turn.tool_calls:
                idle_turns += 1
                if idle_turns >= self.limits.max_idle_turns:
                    return Outcome(
                        "failed", reason=f"the model made no tool call in {idle_turns} turns"
                    )
                self.conversation.add_user(self._nudge())
                continue
            outcome = await self._after_calls(turn.tool_calls, idle_turns)
            if isinstance(outcome, Outcome):
                return outcome
            idle_turns = outcome
        return Outcome(
            "paused", reason=f"reached the step limit ({self.limits.max_steps}) without an answer"
        )

    async def _model_turn(self) -> ModelTurn:
        """The next turn, on a conversation within the context budget. A server that says
        the request is still too long (a token-dense conversation: numbers, logs) gets a
        smaller budget, kept for the rest of the session, and the turn is sent again."""
        for attempt in range(CONTEXT_RETRIES + 1):
            if self.conversation.size() > self.limits.context_chars:
                await self.compact(self.conversation, self.limits.context_chars)
            self.checkpoint()
            temperature = self.repeats.temperature()
            sampling = {} if temperature is None else {"temperature": temperature}
            try:
                return await self.model.turn(
                    self.conversation, self.tools, on_text_delta=self._delta, **sampling
                )
            except ModelContextError as error:
                if attempt == CONTEXT_RETRIES:
                    raise
                fitting = error.fitting_chars(self.conversation.size())
                self.limits.context_chars = max(MIN_CONTEXT_CHARS, fitting)
        raise AssertionError("unreachable")

    async def _after_calls(self, calls: list[ToolCall], idle_turns: int) -> Outcome | int:
        """Run a turn's calls; an Outcome ends the run, an int is the new idle-turn count."""
        answer, usable = await self._run_calls(calls)
        if self.gate.pending is not None:
            return Outcome("awaiting_approval", reason=self.gate.pending.reason)
        if answer is not None:
            return Outcome("completed", answer=answer)
        idle_turns = 0 if usable else idle_turns + 1
        if idle_turns >= self.limits.max_idle_turns:
            if (taken := self._answer_from_output()) is not None:
                return taken
            return Outcome(
                "failed",
                reason=f"{idle_turns} turns in a row had no usable action (code repeating a failed "
                "cell, malformed or unknown tool calls, answers given before any code ran, an "
                "answer sent back again that no output shows, or an error given as the answer)",
            )
        if self.state.kernel_deaths > self.limits.max_kernel_deaths:
            return Outcome(
                "failed",
                reason=f"the kernel died {self.state.kernel_deaths} times; the last: "
                f"{self._last_death}",
            )
        return idle_turns

    # -- one turn's tool calls -------------------------------------------------------

    async def _run_calls(self, calls: list[ToolCall]) -> tuple[str | None, bool]:
        answer: str | None = None
        usable = False
        repeated = executed = False
        guess: str | None = None
        ran: list[RanCell] = []
        """Cells run earlier in this turn: an answer in the same reply must agree with them."""
        for call in calls:
            try:
                action = parse_call(call, self.host_tools)
            except ToolArgumentError as error:
                self.emit(Error(message=f"unusable tool call {call.name}: {error}"))
                self.conversation.add_tool_result(call.id, f"[tool error] {error}")
                continue
            if action.kind == "final_answer":
                review = self.answers.review(
                    action.text, data_present=self._data_present(), same_turn=ran
                )
                self.emit(
                    AnswerReviewed(answer=action.text, verdict=review.verdict, detail=review.detail)
                )
                if review.verdict == "no_evidence":
                    self.conversation.add_tool_result(call.id, review.message)
                    continue  # not usable: repeated guesses end the session as failed
                usable = usable or not review.repeated
                repeated = repeated or review.repeated
                guess = action.text if review.repeated else guess
                if review.verdict != "accepted":
                    self.conversation.add_tool_result(call.id, review.message)
                    continue
                answer = action.text
                self.answer_grounded = self.answers.grounded(answer)
                self.conversation.add_tool_result(call.id, "[answer recorded]")
                continue
            if action.kind == "host_tool":
                usable = True
                if not await self._run_host_tool(call, action):
                    return None, usable  # waiting for a person; later calls wait too
                self.checkpoint()
                continue
            source = action.text if action.kind == "python" else shell_cell(action.text)
            if (earlier := self.repeats.failed_before(action.kind, source)) is not None:
                repeated = True
                self._refuse_repeat(call, action, source, earlier)
                continue
            if (last := self.repeats.just_ran(action.kind, source)) is not None:
                repeated = usable = True  # working code: the turn ends at the step limit at worst
                self._refuse_rerun(call, action, source, last)
                ran.append(last.cell)  # an answer in this reply is judged against its output
                continue
            usable = True
            gate = self.gate.check(call, action, source)
            if gate is None:
                return None, usable  # waiting for a person; later calls wait too
            cell_id, source = gate
            if cell_id is not None:
                result = await self._run_cell(call, action, source, cell_id)
                cell = RanCell(self.state.cells, source, result.text(), result.ok)
                self.repeats.cell_ran(action.kind, cell_id, cell)
                ran.append(cell)
                executed = True
            self.checkpoint()
        self.repeats.end_turn(repeated, executed)
        self.resent_guess = guess
        return answer, usable

    def _answer_from_output(self) -> Outcome | None:
        """A model stuck resending a guess: the value its code printed, when there is one."""
        if not self.limits.answer_from_output or self.resent_guess is None:
            return None
        if (taken := self.answers.taken_from_output(self.resent_guess)) is None:
            return None
        value, detail = taken
        self.emit(AnswerReviewed(answer=value, verdict="from_output", detail=detail))
        self.answer_grounded = True
        return Outcome("completed", answer=value, reason=detail)

    async def run_tool_call(self, call: ToolCall) -> ExecutionResult | None:
        """Run one python or shell call chosen outside the loop (an MCP client acting as the
        model): the same approval gate, cell events, kernel recovery and feedback (the
        conversation's newest item) as a model's call, without the repeat and answer review.
        None: no cell ran (``self.pending`` is set, or the action was rejected)."""
        action = parse_call(call)
        if action.kind not in ("python", "shell"):
            raise ToolArgumentError(f"{call.name} is not a python or shell action")
        self.conversation.append(AssistantItem(tool_calls=[call]))
        source = action.text if action.kind == "python" else shell_cell(action.text)
        gate = self.gate.check(call, action, source)
        result = None
        if gate is not None and gate[0] is not None:
            result = await self._run_cell(call, action, gate[1], gate[0])
        self.checkpoint()
        return result

    def _refuse_repeat(
        self, call: ToolCall, action: Action, source: str, earlier: FailedCell
    ) -> None:
        """Code identical to a failed cell, on an unchanged kernel: recorded, not run."""
        kind, error = action.cell_kind, earlier.error
        self.emit(self.repeats.skipped(call.id, kind, source, earlier.cell_id, "failed", error))
        self.conversation.add_tool_result(call.id, self.repeats.failure_message(earlier))

    def _refuse_rerun(self, call: ToolCall, action: Action, source: str, last: JustRan) -> None:
        """Code identical to the cell that just ran, nothing changed since: not run again."""
        self.emit(
            self.repeats.skipped(call.id, action.cell_kind, source, last.cell_id, "just_ran", "")
        )
        message = self.repeats.rerun_message(last, self.answers.code_blocks)
        self.conversation.add_tool_result(call.id, message)

    def _nudge(self) -> str:
        """What to say after a reply with no action: the error, when the last cell failed."""
        plain = getattr(self.model, "nudge", prompts.NO_ACTION_NUDGE)
        failure = self.last_failure
        if failure is None:
            return plain
        files = ", ".join(workspace_files(self.sandbox.workspace, limit=10)) or "none"
        notes = " ".join(self.memory.error_notes(failure.error))
        nudge = prompts.AFTER_ERROR_NUDGE.format(error=failure.error, files=files, act=plain)
        return "\n".join(filter(None, [nudge, notes]))

    def _data_present(self) -> bool:
        return bool(workspace_files(self.sandbox.workspace, limit=1))

    async def _run_host_tool(self, call: ToolCall, action: Action) -> bool:
        """Run a call to a host tool unless it waits for approval (then False)."""
        tool = self.host_tools.get(action.text)
        assert tool is not None
        gate = self.gate.check(call, action, approval_text(action.text, action.arguments))
        if gate is None:
            return False
        cell_id, approved = gate
        if cell_id is None:
            return True  # rejected; the model was told
        try:
            arguments = parse_approval_text(action.text, approved)
        except KernelAgentError as error:
            self.conversation.add_tool_result(call.id, f"[tool error] {error}")
            return True
        self.emit(
            HostToolCalled(
                cell_id=cell_id,
                tool_call_id=call.id,
                tool=action.text,
                source=tool.source,
                arguments=arguments,
            )
        )
        result, duration = await call_host_tool(tool, arguments)
        self.emit(
            HostToolFinished(
                cell_id=cell_id,
                tool=action.text,
                source=tool.source,
                text=result.text,
                is_error=result.is_error,
                images=len(result.images),
                duration=duration,
                metadata=result.metadata,
            )
        )
        text = f"[error] {result.text}" if result.is_error else result.text
        self.conversation.add_tool_result(call.id, text, list(result.images))
        return True

    async def _run_cell(
        self, call: ToolCall, action: Action, source: str, cell_id: str
    ) -> ExecutionResult:
        self.current_cell, self.current_outputs, self.current_started = cell_id, [], time.time()
        self.emit(
            CellStarted(cell_id=cell_id, tool_call_id=call.id, kind=action.cell_kind, code=source)
        )
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
            cell_id=cell_id,
        )
        for earlier_cell, outputs in result.display_updates.items():
            self.emit(DisplayUpdated(cell_id=earlier_cell, outputs=outputs))
        manifest = parse_expression(result.user_expressions)
        self.state.cells += 1
        notes = self.memory.record(
            action.kind,
            source,
            result,
            cell_number=self.state.cells,
            cell_id=cell_id,
            manifest=manifest,
        )
        self.answers.cell_ran(self.state.cells, source, result.text(), result.ok)
        if not result.ok and result.status != "interrupted":
            self.last_failure = FailedCell(
                self.state.cells,
                cell_id,
                error_line(result) or result.detail or result.status,
                self.memory.state,
            )
        elif result.ok:
            self.last_failure = None
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
        text = "\n".join([feedback.text, *notes])
        if result.status == "kernel_died":
            self.memory.forget_names()
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
