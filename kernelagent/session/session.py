"""A Session: sandbox + conversation + recorder + event stream, for one task.

This is what the CLI, the Python API and the server drive. The notebook is written
as the session runs; it holds everything needed to continue the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.agent.compaction import ModelSummaryCompactor, RunningSummary
from kernelagent.agent.host_tools import HostTools
from kernelagent.agent.loop import AgentLoop, LoopLimits, LoopState, Outcome
from kernelagent.agent.model import Conversation, Model, ModelTurn
from kernelagent.agent.prompts import system_prompt
from kernelagent.agent.transport import reporting_retries
from kernelagent.agent.workspace import workspace_files
from kernelagent.events import (
    SessionFinished,
    SessionStarted,
    StatusChanged,
    Usage,
    UsageUpdated,
    UserMessage,
)
from kernelagent.hashing import sha256_file
from kernelagent.literals import ApiKind
from kernelagent.notebook.recorder import NotebookRecorder
from kernelagent.replay.restore import restore_state
from kernelagent.sandbox.maintenance import recorded_kernelspec
from kernelagent.sandbox.pool_client import pool_enabled_by_default
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import DEFAULT_WARM_UP, describe_names
from kernelagent.session.egress_audit import EgressAttribution
from kernelagent.session.host_tool_setup import HostToolContext, open_host_tools
from kernelagent.session.memory_hooks import SessionMemory, learn_turn_by_default, memory_store
from kernelagent.session.sandbox_start import SessionSandbox, start_session_sandbox
from kernelagent.session.stream import EventStream
from kernelagent.telemetry import session_subscriber


def describe_input(path: Path) -> dict[str, Any]:
    """Name, size and sha256 of a workspace input, so a replay can check it has the same data."""
    return {"name": path.name, "size": path.stat().st_size, "sha256": sha256_file(path)}


def sessions_home() -> Path:
    from kernelagent.session.store import default_home

    return default_home() / "sessions"


class SessionConfig(BaseModel):
    """Everything a session is started with (stored in the notebook metadata)."""

    model: str = "gpt-4.1-mini"
    api: ApiKind = "responses"
    base_url: str | None = None
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    limits: LoopLimits = Field(default_factory=LoopLimits)
    """Steps, timeouts, token/cost budgets, compaction: how far one run may go."""
    stream: bool = True
    """Stream model output; off for servers that report usage only without streaming."""
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    local_model: str | None = None
    """A model kernelagent serves itself (catalog name or .gguf path; "" for the default).
    ``base_url`` then points at a server that lives only as long as one run, so resuming
    or continuing starts it again."""
    attempts: int = Field(default=1, ge=1, le=8)
    """Independent attempts at a new task, each in its own sandbox on its own copy of the
    workspace; the session keeps the answer most of them agree on (see session.attempts)."""
    attempt_temperature: float = 0.7
    """Sampling temperature of attempts 2, 3, ... (attempt 1 uses ``limits.temperature``)."""
    pool: bool = Field(default_factory=pool_enabled_by_default)
    """Take the sandbox from the machine's warm pool (``--no-pool``: start it cold, without
    the warm-up; ``$KERNELAGENT_POOL=0`` turns the default off)."""
    warm_up: str = DEFAULT_WARM_UP
    """Code a pooled kernel has run before the session gets it (recorded; replay runs it)."""
    mcp_servers: list[str] = Field(default_factory=list)
    """``--mcp-server NAME=CMD|URL`` as given: MCP servers whose tools the agent gets (host
    tools; see session.mcp_tools)."""
    mcp_config: str | None = None
    """``--mcp-config FILE`` (``mcpServers`` JSON): its path only, so its secrets stay out of
    the stored config; resuming reads it again."""
    driven_by: Literal["agent", "mcp"] = "agent"
    """Who chooses the actions: kernelagent's own model, or an MCP client of
    ``kernelagent mcp`` (its approvals are handed to that server; see mcp_server)."""
    max_reply_tokens: int | None = Field(default=None, ge=16)
    """The longest reply the model may write (the request's max tokens); None: the server's
    limit. For a model kernelagent serves itself ``api.served_model`` sets it, so a small
    model that rambles on cannot hold a decoding slot for minutes."""
    decoding_slots: int | None = Field(default=None, ge=1)
    """The model server is llama.cpp's llama-server with this many parallel slots: attempts
    run on at most that many at once, each pinned to its own slot so its prompt stays cached.
    Set by ``api.served_model`` for the local model; None for any other server."""
    parallel_attempts: int | None = Field(default=None, ge=1)
    """How many attempts run at once; None: all of them on a remote server. For a model
    kernelagent serves itself, ``api.served_model`` sets it to the server's decoding slots."""
    agent_memory: bool = True
    """Recall memories of earlier sessions into the prompt and write what this one learned
    (``--no-agent-memory``: neither). Not the sandbox's memory limit (``sandbox.mem_limit``)."""
    memory_project: str | None = None
    """A project namespace for memories (None: the user's own space)."""
    learn_turn: bool = Field(default_factory=learn_turn_by_default)
    """With agent memory, one more model turn (no tools) after a completed task: the model
    notes what it learned, kept as a fact for later sessions ($KERNELAGENT_LEARN=0: off)."""

    @model_validator(mode="before")
    @classmethod
    def _limits_recorded_flat(cls, data: Any) -> Any:
        """Notebooks recorded before the limits had their own field kept them flat."""
        if isinstance(data, dict) and (flat := _LIMIT_FIELDS & data.keys()):
            limits = {**(data.get("limits") or {}), **{name: data[name] for name in flat}}
            data = {key: value for key, value in data.items() if key not in flat} | {
                "limits": limits
            }
        return data


_LIMIT_FIELDS = frozenset(field.name for field in dataclasses.fields(LoopLimits))


class Session:
    """One agent session. Create with :meth:`start`; call :meth:`run`; then :meth:`close`."""

    def __init__(
        self,
        session_id: str,
        config: SessionConfig,
        model: Model,
        sandbox: Sandbox,
        recorder: NotebookRecorder,
        conversation: Conversation,
        stream: EventStream,
        host_tools: HostTools | None = None,
    ) -> None:
        self.id = session_id
        self.config = config
        self.model = model
        self.sandbox = sandbox
        self.recorder = recorder
        self.conversation = conversation
        self.stream = stream
        self.host_tools = host_tools or HostTools()
        """Tools that run on the host (memory, MCP servers); closed with the session."""
        self.loop = AgentLoop(
            model,
            sandbox,
            conversation,
            stream.emit,
            limits=config.limits,
            state=LoopState(),
            checkpoint=lambda: recorder.set_conversation(self.conversation_state()),
            approval=config.approval,
            recover_kernel=self._recover_kernel,
            compact=self._compactor(model) if config.limits.summarize_context else None,
            host_tools=self.host_tools,
        )
        self.status = "starting"
        self.restored_cells = 0
        self.sandbox_listeners: list[Callable[[Sandbox], None]] = []
        """Told when the session moves to a new sandbox (after a kernel death)."""
        self.continued = False
        """True when this session continues a recorded one (no new SessionStarted)."""
        self.egress = EgressAttribution(stream)
        """Turns the sandbox's egress records into ``egress`` events of the cell that made them."""
        stream.subscribe(self.egress)
        sandbox.on_egress(self.egress.record)
        traced_model = config.model if config.driven_by == "agent" else "mcp-client"
        if (tracing := session_subscriber(traced_model, config.base_url)) is not None:
            stream.subscribe(tracing)  # OpenTelemetry spans, when OTEL_EXPORTER_OTLP_* is set
        store = memory_store(config.agent_memory, config.memory_project)
        self.memory = SessionMemory(store, recorder, session_id) if store is not None else None
        self.recall_pending = False
        """Memories go into the system prompt before the next instruction (a new session,
        or a continued one whose prompt was written again)."""
        self.writes_memory = True
        """False for the branches of parallel attempts: the session writes once, at its end."""

    def _compactor(self, model: Model) -> ModelSummaryCompactor:
        def account(turn: ModelTurn) -> None:
            self.loop.state.usage = self.loop.state.usage + turn.usage
            self.stream.emit(UsageUpdated(usage=turn.usage, total=self.loop.state.usage))

        def record(summary: RunningSummary) -> None:
            self.recorder.update_metadata(
                running_summary={
                    "text": summary.text,
                    "items_summarised": summary.items_summarised,
                    "summaries": summary.summaries,
                    "at": time.time(),
                }
            )

        return ModelSummaryCompactor(model, on_turn=account, on_summary=record)

    @property
    def workspace(self) -> Path:
        return self.sandbox.workspace

    @property
    def notebook_path(self) -> Path:
        return self.recorder.path

    @classmethod
    async def start(
        cls,
        config: SessionConfig,
        model: Model,
        *,
        workspace: str | Path | None = None,
        notebook: str | Path | None = None,
        data: list[str | Path] | None = None,
        stream: EventStream | None = None,
        sandbox: Sandbox | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Check inputs, start (or adopt) a sandbox, copy data in, open the notebook.
        ``session_id`` is new unless the caller chose it (a cluster places it first)."""
        data_files = [Path(path) for path in data or []]
        missing = [str(path) for path in data_files if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"data file not found: {', '.join(missing)}")
        session_id = session_id or uuid.uuid4().hex[:12]
        session_dir = sessions_home() / session_id
        started: SessionSandbox | None = None
        if sandbox is None:
            workspace_dir = Path(workspace) if workspace else session_dir / "workspace"
            if config.sandbox.network_allow and not config.sandbox.egress_log:
                config.sandbox.egress_log = str(session_dir / "egress.jsonl")
            started = await start_session_sandbox(
                config.sandbox, workspace_dir, pool=config.pool, warm_up=config.warm_up
            )
            sandbox = started.sandbox
        for path in data_files:
            sandbox.put_file(path, path.name)
        notebook_path = Path(notebook) if notebook else session_dir / "session.ipynb"
        notebook_path.parent.mkdir(parents=True, exist_ok=True)
        stream = stream or EventStream(session_id)
        stream.session_id = session_id
        recorder = NotebookRecorder(
            notebook_path, session_id=session_id, kernelspec=recorded_kernelspec(config.sandbox)
        )
        recorder.update_metadata(
            inputs=[describe_input(sandbox.workspace / p.name) for p in data_files]
        )
        warm_up = started.warm_up if started is not None else None
        if started is not None:
            recorder.update_metadata(
                kernel=started.kernel_metadata(), warm_up=warm_up.as_metadata() if warm_up else None
            )
        if sandbox.settings.network_allow:
            recorder.update_metadata(
                network_allow=list(sandbox.settings.network_allow),
                egress_log=sandbox.settings.egress_log,
            )
        stream.subscribe(recorder.handle, critical=True)
        conversation = Conversation(
            system=system_prompt(
                sandbox.kernel_workspace,
                workspace_files(sandbox.workspace),
                code_blocks=config.api == "code-blocks",
                host_workspace=sandbox.workspace,
                imported=describe_names(warm_up.names) if warm_up else "",
            )
        )
        try:
            host_tools = await open_host_tools(
                HostToolContext(session_id, config, sandbox.workspace, notebook_path)
            )
        except BaseException:
            if started is not None:
                await sandbox.shutdown()
            raise
        session = cls(
            session_id, config, model, sandbox, recorder, conversation, stream, host_tools
        )
        session.recall_pending = True
        return session

    async def run(self, instruction: str | None, *, finish: bool = True) -> Outcome:
        """Work on a task or follow-up instruction (None: carry on where the session
        stopped, e.g. after an approval); the notebook is saved at every step.

        With ``finish=False`` (parallel attempts) the session's status and answer are left
        for :meth:`finish`, once the attempts have voted."""
        first = self.loop.state.steps == 0 and not self.continued
        if first and instruction is not None:
            self.stream.emit(
                SessionStarted(
                    task=instruction,
                    model=self.config.model,
                    sandbox=self.config.sandbox.kind,
                    image=self.config.sandbox.image
                    if self.config.sandbox.kind == "docker"
                    else None,
                    workspace=str(self.workspace),
                    notebook_path=str(self.notebook_path),
                )
            )
        if instruction is not None:
            if self.recall_pending and self.memory is not None:
                self.memory.recall(self.conversation, instruction, self.workspace)
            self.recall_pending = False
            self.stream.emit(UserMessage(text=instruction))
        self._set_status("running")
        try:
            with reporting_retries(self.stream.emit):  # "model server busy, retrying 2/5"
                outcome = await self.loop.run(instruction)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self._interrupt_running_cell()
            if finish:
                self.finish(Outcome("interrupted", reason="stopped by the user"))
            raise
        except Exception as error:
            if finish:
                self.finish(Outcome("failed", reason=f"{error.__class__.__name__}: {error}"))
            raise
        if finish:
            await self._learn(outcome)
            self.finish(outcome)
        return outcome

    async def _learn(self, outcome: Outcome) -> None:
        if not (
            self.memory is not None
            and self.writes_memory
            and self.config.learn_turn
            and outcome.status == "completed"
        ):
            return
        turn = await self.memory.learn(self.model, self.conversation)
        if turn is not None:
            self.loop.state.usage = self.loop.state.usage + turn.usage
            self.stream.emit(UsageUpdated(usage=turn.usage, total=self.loop.state.usage))

    async def _interrupt_running_cell(self) -> None:
        finished = self.loop.interrupted_cell_event()
        if finished is None:
            return
        self.stream.emit(finished)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sandbox.interrupt(), timeout=5)

    def _set_status(self, status: str, reason: str = "") -> None:
        self.status = status
        self.stream.emit(StatusChanged(status=status, reason=reason))  # type: ignore[arg-type]

    def finish(self, outcome: Outcome) -> None:
        """Record the outcome: conversation and usage in the notebook, status, answer."""
        self.recorder.set_conversation(self.conversation_state())
        self.recorder.update_metadata(
            usage=self.loop.state.usage.model_dump(),
            answer=outcome.answer,
            config=self.config.model_dump(mode="json"),
        )
        if self.memory is not None and self.writes_memory:
            self.memory.write_after(self.workspace)
        self._set_status(outcome.status, outcome.reason)
        self.stream.emit(
            SessionFinished(
                status=outcome.status,
                answer=outcome.answer,
                reason=outcome.reason,
                usage=self.loop.state.usage,
            )
        )

    async def _recover_kernel(self) -> str:
        """The kernel died: a fresh sandbox on the same workspace, state rebuilt by replay."""
        old = self.sandbox
        with contextlib.suppress(Exception):
            await old.shutdown()
        self.sandbox = await Sandbox.start(self.config.sandbox, old.workspace)
        self.sandbox.after_restart.extend(old.after_restart)
        self.sandbox.on_egress(self.egress.record)
        self.loop.sandbox = self.sandbox
        report = await restore_state(
            self.recorder.notebook, self.sandbox, timeout=self.config.limits.cell_timeout
        )
        self.restored_cells = len(report.ran)
        for listener in self.sandbox_listeners:
            listener(self.sandbox)
        return f"The recorded cells were re-run to restore your variables: {report.summary()}"

    def conversation_state(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation.model_dump(mode="json"),
            "steps": self.loop.state.steps,
            "cells": self.loop.state.cells,
            "usage": self.loop.state.usage.model_dump(),
            "kernel_deaths": self.loop.state.kernel_deaths,
            "saved_at": time.time(),
        }

    def restore_loop_state(self, stored: dict[str, Any]) -> None:
        """Counters saved by :meth:`conversation_state`, so limits and usage carry over."""
        self.loop.state.steps = int(stored.get("steps", 0) or 0)
        self.loop.state.cells = int(stored.get("cells", 0) or 0)
        if stored.get("usage"):
            self.loop.state.usage = Usage.model_validate(stored["usage"])

    @classmethod
    async def continue_from(
        cls,
        notebook_path: Path,
        config: SessionConfig,
        model: Model,
        sandbox: Sandbox,
        conversation: Conversation,
        *,
        stream: EventStream | None = None,
        steps: int = 0,
    ) -> Session:
        """A session that appends to an existing notebook, with a restored sandbox."""
        recorder = NotebookRecorder.open(notebook_path)
        # New cells run in the sandbox: "Run All" in JupyterLab must not run them on the host.
        recorder.notebook.metadata["kernelspec"] = recorded_kernelspec(
            config.sandbox
        )  # made a node
        recorded = recorder.notebook.metadata.get("kernelagent", {})
        session_id = recorded.get("session_id") or uuid.uuid4().hex[:12]
        stream = stream or EventStream(session_id)
        stream.session_id = session_id
        stream.subscribe(recorder.handle, critical=True)
        recorder.update_metadata(workspace=str(sandbox.workspace), model=config.model)
        host_tools = await open_host_tools(
            HostToolContext(session_id, config, sandbox.workspace, notebook_path)
        )
        session = cls(
            session_id, config, model, sandbox, recorder, conversation, stream, host_tools
        )
        session.continued = True
        session.restore_loop_state(recorded.get("conversation") or {"steps": steps})
        return session

    async def close(self, *, remove_workspace: bool = False) -> None:
        try:
            await self.host_tools.aclose()
        finally:
            await self.sandbox.shutdown()
        if remove_workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)
