"""One session placed on a node host: what it runs (:class:`Placement`), the events it
emitted so far (the submitter follows them by cursor) and what it came to.

Runs in the node host's process and event loop, next to the node's other sessions; the
loop, the sandbox (Docker on this node, as in a local run) and the recorder write to the
shared store and home (the notebook's ``metadata.kernelagent.node`` names the Ray node
that last worked on it). No Ray here: :mod:`.host` is the actor around it.

Taking a session over (``placement.lost_node``): the node it ran on died. The claim is
one locked update of the session's row (its status still running or starting, its node
still the lost one), so two node hosts never both take a session over; the session is
then marked interrupted and resumed by replay into a new sandbox (a sandbox of another
node is never re-attached to: it lives in that node's Docker engine). The finished cells
stay, the one that ran is marked interrupted and the model is told
(:func:`kernelagent.session.durable.resume_session`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from kernelagent.agent.approvals import Decision
from kernelagent.agent.models_factory import make_model
from kernelagent.cluster.placement import Placement
from kernelagent.errors import describe
from kernelagent.events import Event, Usage
from kernelagent.notebook.recorder import load_notebook
from kernelagent.session.durable import register, resume_session
from kernelagent.session.runner import SessionResult, close_model, run_to_stop
from kernelagent.session.session import Session, SessionConfig
from kernelagent.session.store import (
    SessionNotFoundError,
    SessionRecord,
    SessionStateError,
    SessionStore,
)
from kernelagent.session.stream import EventStream

POLL_SECONDS = 0.05
RUNNING = ("running", "starting")


class PlacedSession:
    """A placement at work on this node; :meth:`follow` hands out its events."""

    def __init__(self, placement: Placement, node: str) -> None:
        self.placement = placement
        self.node = node
        self.incarnation = uuid.uuid4().hex
        """This attempt's id: a placement sent again is another attempt."""
        self.events: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.error: tuple[str, str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    def start(self, slots: asyncio.Semaphore) -> None:
        """Run as soon as one of the node's ``slots`` is free."""
        self.task = asyncio.get_running_loop().create_task(self._work(slots))

    async def follow(self, cursor: int, wait: float) -> dict[str, Any]:
        """The events after ``cursor``, waiting up to ``wait`` seconds for some."""
        deadline = time.monotonic() + wait
        while len(self.events) <= cursor and not self.done and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
        done = self.done  # then no event comes after those taken next
        return {
            "incarnation": self.incarnation,
            "node": self.node,
            "events": self.events[cursor:],
            "done": done,
            "result": self.result,
            "error": self.error,
        }

    def cancel(self) -> None:
        """The submitter stopped (Ctrl-C): the session stops as a local one would."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _collect(self, event: Event) -> None:
        self.events.append(event.model_dump(mode="json"))

    async def _work(self, slots: asyncio.Semaphore) -> None:
        try:
            async with slots:
                result = await self._run()
            self.result = result_fields(result)
        except asyncio.CancelledError:
            self.error = ("stopped by the user", f"kernelagent resume {self.placement.session_id}")
        except Exception as error:  # the submitter raises it as a kernelagent error
            self.error = describe(error)
        finally:
            self.finished_at = time.monotonic()

    async def _run(self) -> SessionResult:
        placement = self.placement
        config = SessionConfig.model_validate(placement.config)
        model = make_model(
            config.api,
            config.model,
            base_url=config.base_url,
            api_key=placement.api_key,
            stream=config.stream,
            max_output_tokens=config.max_reply_tokens,
        )
        if placement.kind == "continue":
            return await self._continue(config, model)
        stream = EventStream(placement.session_id)
        stream.subscribe(self._collect)
        store = SessionStore()
        record = _find(store, placement.session_id)
        if record is None:
            if placement.kind != "run":
                await close_model(model)
                raise SessionNotFoundError(f"no session {placement.session_id!r} in {store.url}")
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
            session.recorder.update_metadata(node=self.node)
            return await run_to_stop(session, placement.instruction, store, model, new_task=True)
        instruction = placement.instruction
        decision = Decision.model_validate(placement.decision) if placement.decision else None
        if placement.kind == "run" and not placement.retry:
            await close_model(model)
            raise SessionStateError(f"session {record.id} exists already in {store.url}")
        claimed = self._claim(store, record)
        if claimed == "taken over":
            if placement.retry:
                instruction, decision = None, None  # the lost attempt had taken them in
        elif claimed == "stopped there":
            await close_model(model)
            return _stored_result(store.get(record.id), list(stream.history))
        session, _ = await resume_session(
            store,
            record.id,
            model,
            instruction=instruction,
            decision=decision,
            stream=stream,
            config=config,
        )
        session.recorder.update_metadata(node=self.node)
        return await run_to_stop(session, instruction, store, model)

    def _claim(self, store: SessionStore, record: SessionRecord) -> str:
        """Make this node the session's node before its sandbox starts (so no sweep takes
        the new sandbox for a stale one); returns what the session was doing."""
        lost = self.placement.lost_node
        moved = {"sandbox_state": None} if record.node not in (None, self.node) else {}
        if lost is not None:
            taken = store.update_if(
                record.id,
                lambda current: current.status in RUNNING and current.node == lost,
                status="interrupted",
                reason=f"its node {lost} was lost; resuming on node {self.node}",
                owner_pid=None,
                node=self.node,
                **({"sandbox_state": None} if lost != self.node else {}),
            )
            if taken:
                return "taken over"
            current = store.get(record.id)
            if current.status in RUNNING:
                raise SessionStateError(
                    f"session {record.id} runs on node {current.node}, not on the lost {lost}"
                )
            taken_in = self.placement.kind == "run" or self.placement.instruction is None
            if self.placement.retry and current.node == lost and taken_in:
                return "stopped there"  # the lost attempt brought it to its stop
        claimed = store.update_if(
            record.id,
            # a local session left running by a process that is gone (the submitter checked)
            lambda current: current.status not in RUNNING or current.node is None,
            node=self.node,
            **moved,
        )
        if not claimed:
            current = store.get(record.id)
            raise SessionStateError(
                f"session {record.id} is {current.status} on node {current.node}",
                hint="wait until it stops (kernelagent sessions), then resume it",
            )
        return "resumed"

    async def _continue(self, config: SessionConfig, model: Any) -> SessionResult:
        from kernelagent.session.continuation import continue_notebook, restored_note

        placement = self.placement
        assert placement.notebook is not None and placement.instruction is not None
        out = placement.out or placement.notebook
        session, report = await continue_notebook(
            placement.notebook,
            placement.instruction,
            config,
            model,
            in_place=out == placement.notebook,
            out=out,
            workspace=placement.workspace,
            on_event=self._collect,
        )
        session.recorder.update_metadata(node=self.node)
        try:
            outcome = await session.run(f"{restored_note(report)}\n\n{placement.instruction}")
        finally:
            await session.close()
            await close_model(model)
        return SessionResult.of(session, outcome)


def result_fields(result: SessionResult) -> dict[str, Any]:
    """A :class:`SessionResult` as it travels back to the submitter."""
    return {
        "session_id": result.session_id,
        "status": result.status,
        "answer": result.answer,
        "reason": result.reason,
        "notebook": str(result.notebook_path),
        "workspace": str(result.workspace),
        "usage": result.usage.model_dump(),
    }


def _stored_result(record: SessionRecord, events: list[Event]) -> SessionResult:
    """What a session that stopped on its lost node came to, from the store."""
    try:
        answer = load_notebook(record.notebook).metadata.get("kernelagent", {}).get("answer")
    except Exception:
        answer = None
    return SessionResult(
        session_id=record.id,
        status=record.status,
        answer=answer,
        reason=record.reason,
        notebook_path=Path(record.notebook),
        workspace=Path(record.workspace),
        usage=Usage(input_tokens=record.input_tokens, output_tokens=record.output_tokens),
        events=events,
    )


def _find(store: SessionStore, session_id: str) -> SessionRecord | None:
    try:
        return store.get(session_id)
    except SessionNotFoundError:
        return None
