"""The Ray actor that runs one session on its node: the loop, the sandbox (Docker on that
node, as in a local run) and the recorder, writing to the shared store and home.

Ray builds the actor again on another node when its node dies (``max_restarts``); the
new one finds the session in the store and resumes it by replay into a new sandbox: the
finished cells stay, the one that ran is marked interrupted and the model is told
(:func:`kernelagent.session.durable.resume_session`).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import ray

from kernelagent.agent.approvals import Decision
from kernelagent.agent.models_factory import make_model
from kernelagent.cluster.placement import Placement
from kernelagent.errors import describe
from kernelagent.events import Event
from kernelagent.session.durable import register, resume_session
from kernelagent.session.runner import SessionResult, run_to_stop
from kernelagent.session.session import Session, SessionConfig
from kernelagent.session.store import SessionNotFoundError, SessionRecord, SessionStore
from kernelagent.session.stream import EventStream

POLL_SECONDS = 0.05


class SessionActor:
    """Runs :class:`Placement` once it is followed; :meth:`follow` hands out its events."""

    def __init__(self, placement: dict[str, Any]) -> None:
        self.placement = Placement.model_validate(placement)
        os.environ.update(self.placement.environment)
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        self.restarted = context.was_current_actor_reconstructed
        """This actor is a restart: its earlier self died with its node."""
        self.incarnation = uuid.uuid4().hex
        self.events: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.error: tuple[str, str] | None = None
        self.task: asyncio.Task[None] | None = None

    async def follow(self, cursor: int, incarnation: str, wait: float = 2.0) -> dict[str, Any]:
        """The events after ``cursor`` (all of them when ``incarnation`` is not this
        actor's: a restarted actor numbers from 0), waiting up to ``wait`` seconds for some."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._work())
        if incarnation != self.incarnation:
            cursor = 0
        deadline = time.monotonic() + wait
        while len(self.events) <= cursor and not self.task.done() and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
        done = self.task.done()  # then no event comes after those taken next
        return {
            "incarnation": self.incarnation,
            "node": self.node,
            "events": self.events[cursor:],
            "done": done,
            "result": self.result,
            "error": self.error,
        }

    def _collect(self, event: Event) -> None:
        self.events.append(event.model_dump(mode="json"))

    async def _work(self) -> None:
        try:
            result = await self._run()
            self.result = {
                "session_id": result.session_id,
                "status": result.status,
                "answer": result.answer,
                "reason": result.reason,
                "notebook": str(result.notebook_path),
                "workspace": str(result.workspace),
                "usage": result.usage.model_dump(),
            }
        except Exception as error:  # the submitter raises it as a kernelagent error
            self.error = describe(error)

    async def _run(self) -> SessionResult:
        placement = self.placement
        store = SessionStore()
        config = SessionConfig.model_validate(placement.config)
        model = make_model(
            config.api,
            config.model,
            base_url=config.base_url,
            api_key=placement.api_key,
            stream=config.stream,
            max_output_tokens=config.max_reply_tokens,
        )
        stream = EventStream(placement.session_id)
        stream.subscribe(self._collect)
        record = _find(store, placement.session_id)
        if placement.kind == "run" and record is None:
            session = await Session.start(
                config,
                model,
                workspace=placement.workspace,
                notebook=placement.notebook,
                data=list(placement.data),
                stream=stream,
                session_id=placement.session_id,
            )
            register(store, session, placement.instruction or "")
            store.update(session.id, node=self.node)
            return await run_to_stop(session, placement.instruction, store, model, new_task=True)
        if record is None:
            raise SessionNotFoundError(f"no session {placement.session_id!r} in {store.url}")
        instruction = placement.instruction
        decision = Decision.model_validate(placement.decision) if placement.decision else None
        if self.restarted and record.status in ("running", "starting"):
            self._take_over(store, record)
            instruction, decision = None, None  # the earlier actor had taken them in
        session, _ = await resume_session(
            store,
            record.id,
            model,
            instruction=instruction,
            decision=decision,
            stream=stream,
            config=config,
        )
        store.update(session.id, node=self.node)
        return await run_to_stop(session, instruction, store, model)

    def _take_over(self, store: SessionStore, record: SessionRecord) -> None:
        """The session's node died while it ran: it was interrupted there."""
        store.update(
            record.id,
            status="interrupted",
            reason=f"its node {record.node or '?'} was lost; resuming on node {self.node}",
            owner_pid=None,
        )


def _find(store: SessionStore, session_id: str) -> SessionRecord | None:
    try:
        return store.get(session_id)
    except SessionNotFoundError:
        return None
