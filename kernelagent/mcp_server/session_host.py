"""One MCP client connection's kernelagent session.

The session starts at the client's first call that needs it (so listing tools costs no
sandbox), or re-attaches to a stored one (``kernelagent mcp --session ID``) through the
same resume path as ``kernelagent resume``. python and shell calls go through the agent
loop's approval gate and cell events, so the recorder, the store and the CLI see the same
stream as in a ``kernelagent run``. When the client goes, the session is ``paused`` with
its sandbox kept, ready to be re-attached.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kernelagent.agent.approvals import PendingApproval
from kernelagent.agent.limits import Outcome
from kernelagent.agent.model import (
    Conversation,
    ImagePart,
    ModelTurn,
    TextDeltaCallback,
    ToolCall,
    ToolResultItem,
    ToolSpec,
)
from kernelagent.agent.tools import ToolArgumentError
from kernelagent.errors import KernelAgentError
from kernelagent.events import (
    ApprovalDecided,
    KernelRestarted,
    SessionStarted,
    StatusChanged,
    UserMessage,
    code_sha256,
)
from kernelagent.literals import CellKind
from kernelagent.mcp_server import approvals
from kernelagent.sandbox.sandbox import shell_cell
from kernelagent.session.durable import register, resume_session
from kernelagent.session.session import Session, SessionConfig
from kernelagent.session.store import SessionStore
from kernelagent.session.stream import EventStream


class ClientDrivenError(KernelAgentError, RuntimeError):
    """Something asked the session's model for a turn, but an MCP client chooses its actions."""


class McpClientModel:
    """Stands where kernelagent's model would: the MCP client chooses the actions."""

    supports_images = True

    def __init__(self, name: str) -> None:
        self.name = name

    async def turn(
        self,
        conversation: Conversation,
        tools: list[ToolSpec],
        on_text_delta: TextDeltaCallback | None = None,
        *,
        temperature: float | None = None,
    ) -> ModelTurn:
        raise ClientDrivenError(
            f"this session is driven by the MCP client {self.name}; it has no model to ask",
            'to let kernelagent\'s own agent go on, run `kernelagent resume ID "instruction"`',
        )


@dataclass
class CallResult:
    """What a tool call gives back to the client."""

    text: str
    images: list[ImagePart] = field(default_factory=list)
    is_error: bool = False


@dataclass
class McpServerOptions:
    """How ``kernelagent mcp`` starts each connection's session (from the CLI options)."""

    config: SessionConfig
    data: list[Path] = field(default_factory=list)
    workspace: Path | None = None
    resume_id: str | None = None
    """Re-attach to (or restore) this stored session instead of starting a new one."""


class McpSession:
    """Created per client connection by the server's lifespan; closed when it ends."""

    def __init__(self, options: McpServerOptions, store: SessionStore | None = None) -> None:
        self.options = options
        self.store = store or SessionStore()
        self.session: Session | None = None
        self._lock = asyncio.Lock()
        self._note = ""
        """What re-attaching did, told to the client with its first result."""

    async def get(self, client_name: str = "mcp-client") -> Session:
        """The connection's session, started (or re-attached) on first use."""
        if self.session is None:
            if self.options.resume_id:
                self.session = await self._reattach(self.options.resume_id, client_name)
            else:
                self.session = await self._start(client_name)
        return self.session

    async def _start(self, client_name: str) -> Session:
        config = self.options.config.model_copy(deep=True)
        config.driven_by = "mcp"
        session = await Session.start(
            config,
            McpClientModel(client_name),
            workspace=self.options.workspace,
            data=list(self.options.data),
            stream=EventStream(""),
        )
        task = f"MCP client {client_name} (kernelagent mcp)"
        register(self.store, session, task)
        session.stream.emit(
            SessionStarted(
                task=task,
                model=f"mcp:{client_name}",
                sandbox=config.sandbox.kind,
                image=config.sandbox.image if config.sandbox.kind == "docker" else None,
                workspace=str(session.workspace),
                notebook_path=str(session.notebook_path),
            )
        )
        text = (
            f"An MCP client ({client_name}) runs code in this session's kernel through "
            "`kernelagent mcp`; each of its python and shell calls is a cell below."
        )
        session.stream.emit(UserMessage(text=text))
        session.conversation.add_user(text)
        self._set_status(session, "running")
        return session

    async def _reattach(self, session_id: str, client_name: str) -> Session:
        record = self.store.get(session_id)
        config = SessionConfig.model_validate(record.config)
        config.driven_by = "mcp"
        session, note = await resume_session(
            self.store,
            record.id,
            McpClientModel(client_name),
            stream=EventStream(record.id),
            config=config,
            keep_pending=True,
        )
        self._note = note.strip()
        if record.pending is not None:
            session.loop.gate.pending = record.pending
            self._set_status(session, "awaiting_approval", record.pending.reason)
        else:
            self._set_status(session, "running")
        return session

    # -- calls ---------------------------------------------------------------------------

    async def run_code(
        self, kind: CellKind, text: str, client: str, timeout: float | None = None
    ) -> CallResult:
        """A python cell or a shell command, through the session's approval rules."""
        async with self._lock:
            session = await self.get(client)
            result = await self._run(session, kind, text, timeout)
        if self._note:
            result.text = f"{self._note}\n\n{result.text}"
            self._note = ""
        return result

    async def _run(
        self, session: Session, kind: CellKind, text: str, timeout: float | None
    ) -> CallResult:
        loop = session.loop
        arguments: dict[str, object] = {"code": text} if kind == "python" else {"command": text}
        if timeout is not None and kind == "shell":
            arguments["timeout"] = timeout
        call = ToolCall(
            id=f"mcp_{uuid.uuid4().hex[:16]}", name=kind, arguments=json.dumps(arguments)
        )
        source = text if kind == "python" else shell_cell(text)
        pending = loop.pending
        if pending is not None and pending.code_sha256 == code_sha256(source):
            decision = approvals.take(session.notebook_path.parent, pending.cell_id)
            if decision is None:
                return CallResult(self._waiting(session, pending, again=True))
            loop.decisions[call.id] = decision
        elif pending is not None and loop.gate.policy and loop.gate.policy.reason(kind, source):
            self._supersede(session, pending)
        decided = call.id in loop.decisions
        try:
            ran = await loop.run_tool_call(call)
        except ToolArgumentError as error:
            return CallResult(str(error), is_error=True)
        if loop.pending is not None and loop.pending.tool_call_id == call.id:
            session.conversation.add_tool_result(call.id, "[waiting for a person's approval]")
            self._set_status(session, "awaiting_approval", loop.pending.reason)
            return CallResult(self._waiting(session, loop.pending, again=False))
        if decided:
            loop.gate.pending = None
            self._set_status(session, "running")
        item = session.conversation.items[-1]
        assert isinstance(item, ToolResultItem)
        failed = ran is None or not ran.ok
        return CallResult(item.output, list(item.images), is_error=failed)

    def _waiting(self, session: Session, pending: PendingApproval, *, again: bool) -> str:
        still = "still " if again else ""
        return (
            f"{still}waiting for approval: kernelagent approve {session.id} "
            f"(or kernelagent reject {session.id} --reason ...). This {pending.kind} action "
            f"needs a person's approval: {pending.reason}. Once it is approved, call the tool "
            "again with exactly the same code to run it; other calls work meanwhile."
        )

    def _supersede(self, session: Session, pending: PendingApproval) -> None:
        """A newer action needs approval: the older one is withdrawn (recorded as such)."""
        session.stream.emit(
            ApprovalDecided(
                cell_id=pending.cell_id,
                decision="rejected",
                decided_by="kernelagent",
                code=pending.code,
                reason="withdrawn: the MCP client sent another action that needs approval",
            )
        )
        session.loop.gate.pending = None

    async def restart(self, client: str) -> CallResult:
        async with self._lock:
            session = await self.get(client)
            await session.sandbox.restart()
            session.loop.memory.forget_names()
            session.stream.emit(KernelRestarted(reason="restarted by the MCP client"))
        return CallResult(
            "The kernel was restarted: its variables are gone; files in the workspace remain."
        )

    def _set_status(self, session: Session, status: str, reason: str = "") -> None:
        session.status = status
        session.stream.emit(StatusChanged(status=status, reason=reason))  # type: ignore[arg-type]

    # -- end -----------------------------------------------------------------------------

    async def close(self) -> None:
        """The client went: the session pauses; its sandbox is kept for re-attaching."""
        session, self.session = self.session, None
        if session is None:
            return
        reason = (
            f"the MCP client disconnected; re-attach with `kernelagent mcp --session {session.id}`"
        )
        if session.loop.pending is None:
            session.finish(Outcome("paused", reason=reason))
        else:
            session.recorder.set_conversation(session.conversation_state())
            session.recorder.save()
        if session.config.sandbox.kind == "docker":
            session.sandbox.client.stop_channels()
            self.store.update(session.id, owner_pid=None)
        else:
            await session.close()
            self.store.update(session.id, sandbox_state=None, owner_pid=None)
