"""Durable sessions: kept in the store, resumable from any process.

* :class:`StoreUpdater` follows a session's events into the index.
* :func:`resume_session` re-attaches to the session's sandbox if it is alive, else
  starts a fresh one and restores the state by replay; cells the host process was
  running when it died are marked interrupted and the model is told.
* :func:`decide` records an approval, an edit or a rejection of a pending action.
* :func:`stop_idle_sandboxes` stops the containers of sessions that wait for a person.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kernelagent.agent.approvals import Decision, who
from kernelagent.agent.model import Conversation, Model
from kernelagent.events import (
    CellFinished,
    Event,
    SessionFinished,
    StatusChanged,
    UsageUpdated,
    code_sha256,
)
from kernelagent.machine_files import pid_alive
from kernelagent.notebook.recorder import NotebookFormatError, load_notebook
from kernelagent.replay.restore import restore_state
from kernelagent.sandbox.maintenance import discard_sandbox
from kernelagent.sandbox.sandbox import Sandbox, SandboxError
from kernelagent.session.session import Session, SessionConfig
from kernelagent.session.store import (
    DEFAULT_IDLE_SECONDS,
    SessionRecord,
    SessionStateError,
    SessionStore,
)
from kernelagent.session.stream import EventStream

NOTES_FILE = "NOTES.md"


class StoreUpdater:
    """A stream subscriber that keeps the session's row in the index current."""

    def __init__(self, store: SessionStore, session: Session) -> None:
        self.store = store
        self.session = session
        session.sandbox_listeners.append(self._sandbox_changed)

    def __call__(self, event: Event) -> None:
        if event.attempt is not None:
            return  # a parallel attempt's own events; the session's row follows the session
        if isinstance(event, StatusChanged):
            fields: dict[str, Any] = {"status": event.status, "reason": event.reason}
            if event.status == "awaiting_approval":
                fields["pending"] = self.session.loop.pending
            elif event.status == "running":
                fields["pending"] = None
                fields["owner_pid"] = os.getpid()
            self.store.update(self.session.id, **fields)
        elif isinstance(event, UsageUpdated):
            self.store.update(
                self.session.id,
                steps=self.session.loop.state.steps,
                input_tokens=event.total.input_tokens,
                output_tokens=event.total.output_tokens,
            )
        elif isinstance(event, CellFinished):
            self.store.update(self.session.id, cells=self.session.loop.state.cells)
        elif isinstance(event, SessionFinished) and event.status in ("completed", "failed"):
            self.store.update(self.session.id, owner_pid=None)

    def _sandbox_changed(self, sandbox: Sandbox) -> None:
        self.store.update(self.session.id, sandbox_state=sandbox.state())


def register(store: SessionStore, session: Session, task: str) -> None:
    """Put a new session into the index and follow its events there."""
    now = time.time()
    store.create(
        SessionRecord(
            id=session.id,
            status="starting",
            task=task,
            created_at=now,
            updated_at=now,
            notebook=session.notebook_path,
            workspace=session.workspace,
            config=session.config.model_dump(mode="json"),
            sandbox_state=session.sandbox.state(),
            owner_pid=os.getpid(),
        )
    )
    session.stream.subscribe(StoreUpdater(store, session))


def check_resumable(
    record: SessionRecord,
    instruction: str | None,
    decision: Decision | None,
    *,
    keep_pending: bool = False,
) -> Any:
    """Refuse clearly what cannot be resumed; returns the session's notebook.

    ``keep_pending``: an MCP client re-attaches to a session whose action still waits for
    approval (the action stays pending)."""
    _check_status(record, instruction, decision, keep_pending)
    try:
        notebook = load_notebook(record.notebook)
    except NotebookFormatError as error:
        raise SessionStateError(
            f"session {record.id} cannot be resumed: its notebook is damaged ({error}); "
            f"the session directory is {record.directory}"
        ) from None
    stored = notebook.metadata.get("kernelagent", {}).get("conversation") or {}
    if not stored.get("conversation"):
        raise SessionStateError(
            f"session {record.id} cannot be resumed: its notebook holds no conversation state "
            f"({record.notebook})"
        )
    return notebook


def _check_status(
    record: SessionRecord,
    instruction: str | None,
    decision: Decision | None,
    keep_pending: bool = False,
) -> None:
    if record.status == "running" and record.owner_pid and pid_alive(record.owner_pid):
        raise SessionStateError(f"session {record.id} is running in process {record.owner_pid}")
    if record.status == "completed" and instruction is None:
        raise SessionStateError(
            f"session {record.id} is completed; to go on, give it a new instruction: "
            f'kernelagent resume {record.id} "next step"'
        )
    if record.status == "awaiting_approval" and decision is None and not keep_pending:
        raise SessionStateError(
            f"session {record.id} waits for approval of cell "
            f"{record.pending.cell_id if record.pending else '?'}: "
            f"kernelagent approve {record.id} (or reject {record.id} --reason ...)"
        )
    if decision is not None and record.status != "awaiting_approval":
        raise SessionStateError(
            f"session {record.id} has no pending action (it is {record.status})"
        )


def decide(
    record: SessionRecord,
    decision: str,
    *,
    edited_code: str | None = None,
    reason: str = "",
    decided_by: str | None = None,
) -> Decision:
    """A person's decision on the session's pending action, bound to the code they saw."""
    pending = record.pending
    if record.status != "awaiting_approval" or pending is None:
        raise SessionStateError(
            f"session {record.id} has no pending action (it is {record.status})"
        )
    if code_sha256(pending.code) != pending.code_sha256:
        raise SessionStateError(
            f"session {record.id}: the pending action's code does not match its hash"
        )
    kind = "edited" if edited_code is not None and edited_code != pending.code else decision
    return Decision(
        tool_call_id=pending.tool_call_id,
        cell_id=pending.cell_id,
        decision=kind,  # type: ignore[arg-type]
        code=edited_code if edited_code is not None else pending.code,
        approved_sha256=pending.code_sha256,
        decided_by=decided_by or who(),
        reason=reason,
    )


async def resume_session(
    store: SessionStore,
    session_id: str,
    model: Model,
    *,
    instruction: str | None = None,
    decision: Decision | None = None,
    stream: EventStream | None = None,
    config: SessionConfig | None = None,
    keep_pending: bool = False,
) -> tuple[Session, str]:
    """Bring a stored session back; returns it (ready to ``run``) and what happened, in words."""
    record = store.get(session_id)
    notebook = check_resumable(record, instruction, decision, keep_pending=keep_pending)
    stored = notebook.metadata["kernelagent"]["conversation"]
    config = config or SessionConfig.model_validate(record.config)
    sandbox, how = await _sandbox_for(record, config, notebook)
    conversation = Conversation.model_validate(stored["conversation"])
    try:
        session = await Session.continue_from(
            record.notebook, config, model, sandbox, conversation, stream=stream
        )
        session.stream.subscribe(StoreUpdater(store, session))
        store.update(record.id, sandbox_state=sandbox.state(), owner_pid=os.getpid())
        interrupted = _close_interrupted_cells(session)
        note = how + (f" {interrupted}" if interrupted else "") + _notes(sandbox.workspace)
        _tell_the_model(session, note)
        if decision is not None:
            session.loop.decisions[decision.tool_call_id] = decision
    except BaseException:
        await sandbox.shutdown()
        raise
    return session, note


async def _sandbox_for(
    record: SessionRecord, config: SessionConfig, notebook: Any
) -> tuple[Sandbox, str]:
    if record.sandbox_state:
        try:
            sandbox = await Sandbox.attach(record.sandbox_state)
            return (
                sandbox,
                "(Session resumed: re-attached to its running sandbox; all variables are intact.)",
            )
        except (SandboxError, OSError, KeyError, RuntimeError, TimeoutError):
            pass
    sandbox = await Sandbox.start(config.sandbox, record.workspace)
    report = await restore_state(notebook, sandbox, timeout=config.limits.cell_timeout)
    return sandbox, (
        "(Session resumed in a new sandbox: the previous one was gone, so the recorded cells were "
        f"re-run: {report.summary()})"
    )


def _close_interrupted_cells(session: Session) -> str:
    """Cells left ``running`` by a dead host process become ``interrupted``; returns a note."""
    closed = []
    by_call: dict[str, Any] = {}
    for cell in session.recorder.notebook.cells:
        info = cell.metadata.get("kernelagent", {})
        if cell.cell_type != "code":
            continue
        by_call[info.get("tool_call_id", "")] = cell
        if info.get("status") == "running":
            started = _timestamp(info.get("started_at"))
            session.stream.emit(
                CellFinished(
                    cell_id=cell.id,
                    status="interrupted",
                    outputs=[dict(o) for o in cell.outputs],
                    started_at=started,
                    finished_at=time.time(),
                    detail="the host process stopped while this cell ran",
                )
            )
            closed.append(cell)
    for call in session.conversation.unanswered_calls():
        cell = by_call.get(call.id)
        if cell is not None and cell.metadata.kernelagent.get("status") == "interrupted":
            text = "".join(
                o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"
            )
            session.conversation.add_tool_result(
                call.id,
                "[interrupted: the host process stopped while this cell ran; it may not have "
                "finished. "
                f"Output so far:]\n{text[-2000:] or '(none)'}",
            )
    if not closed:
        return ""
    return (
        f"{len(closed)} cell(s) were interrupted when the host process stopped; check their "
        f"effects."
    )


def _tell_the_model(session: Session, note: str) -> None:
    """Add the resume note where the API allows it: after any pending tool calls."""
    if session.conversation.unanswered_calls():
        session.loop.resume_note = note
    else:
        session.conversation.add_user(note)


def _notes(workspace: Path) -> str:
    path = workspace / NOTES_FILE
    if not path.is_file():
        return ""
    return f"\nYour notes ({NOTES_FILE}):\n{path.read_text(errors='replace')[-4000:]}"


def _timestamp(value: str | None) -> float:
    if not value:
        return time.time()
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


async def stop_idle_sandboxes(
    store: SessionStore, idle_seconds: float = DEFAULT_IDLE_SECONDS
) -> list[str]:
    """Stop the containers of sessions waiting longer than ``idle_seconds``; their state is
    rebuilt by replay on resume. Returns the ids of the sessions whose sandbox was stopped."""
    stopped = []
    for record in store.idle_sandboxes(idle_seconds):
        try:
            if not discard_sandbox(record.sandbox_state or {}):
                sandbox = await Sandbox.attach(record.sandbox_state or {})
                await sandbox.shutdown()
        except Exception:
            pass
        store.update(record.id, sandbox_state=None)
        stopped.append(record.id)
    return stopped
