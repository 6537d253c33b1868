"""Running a session to where it stops: the work, then its sandbox kept (for a session that
waits for a person) or shut down; what it came to is a :class:`SessionResult`.

Used in the process that runs the session: :mod:`kernelagent.api` and, on a cluster node,
:mod:`kernelagent.cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelagent.agent.loop import Outcome
from kernelagent.agent.model import Model
from kernelagent.events import Event, SessionStatus, Usage
from kernelagent.session.attempts import attempts_allowed, refuse_attempts, run_attempts
from kernelagent.session.session import Session
from kernelagent.session.store import WAITING, SessionStore


@dataclass
class SessionResult:
    session_id: str
    status: SessionStatus
    answer: str | None
    reason: str
    notebook_path: Path
    workspace: Path
    usage: Usage
    events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, session: Session, outcome: Outcome) -> SessionResult:
        """What ``session`` came to, with the events it emitted."""
        return cls(
            session_id=session.id,
            status=outcome.status,
            answer=outcome.answer,
            reason=outcome.reason,
            notebook_path=session.notebook_path,
            workspace=session.workspace,
            usage=session.loop.state.usage,
            events=list(session.stream.history),
        )

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary ``kernelagent run --json`` prints."""
        return {
            "session_id": self.session_id,
            "status": self.status,
            "answer": self.answer,
            "reason": self.reason,
            "notebook": str(self.notebook_path),
            "workspace": str(self.workspace),
            "usage": {**self.usage.model_dump(), "total_tokens": self.usage.total_tokens},
        }


async def run_instruction(
    session: Session, instruction: str | None, model: Model, new_task: bool
) -> Outcome:
    """A new task runs as ``config.attempts`` parallel attempts when it can; the rest run once."""
    if new_task and instruction is not None and session.config.attempts > 1:
        why_not = attempts_allowed(session)
        if why_not is None:
            return await run_attempts(session, instruction, model)
        refuse_attempts(session, why_not)
    return await session.run(instruction)


async def run_to_stop(
    session: Session,
    instruction: str | None,
    store: SessionStore,
    model: Model,
    keep_sandbox: bool = False,
    *,
    new_task: bool = False,
) -> SessionResult:
    """Run, then keep the sandbox for a session that waits for a person, or shut it down."""
    outcome: Outcome | None = None
    try:
        outcome = await run_instruction(session, instruction, model, new_task)
    finally:
        waiting = session.status in WAITING and session.config.sandbox.kind == "docker"
        if keep_sandbox:
            pass
        elif waiting:
            session.sandbox.client.stop_channels()  # the container stays for `resume`/`approve`
        else:
            await session.close()
            store.update(session.id, sandbox_state=None)
        await close_model(model)
    return SessionResult.of(session, outcome)


async def close_model(model: Model) -> None:
    close = getattr(model, "aclose", None)
    if close is not None:
        await close()
