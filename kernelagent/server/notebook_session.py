"""A session that works in a notebook open in JupyterLab (not in a sandbox of its own).

The agent loop is the same as for any session; its computer is the notebook's kernel,
reached through the panel (:mod:`kernelagent.server.notebook_kernel`). The session is
still recorded in a session notebook of its own and listed with the others. It lives in
this server's memory: approvals and follow-ups resume the same loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from kernelagent.agent.approvals import Decision
from kernelagent.agent.loop import AgentLoop, LoopState, Outcome
from kernelagent.agent.model import Conversation, Model
from kernelagent.agent.prompts import system_prompt
from kernelagent.agent.transport import reporting_retries
from kernelagent.agent.workspace import workspace_files
from kernelagent.events import (
    CellFinished,
    Event,
    SessionFinished,
    SessionStarted,
    StatusChanged,
    UsageUpdated,
    UserMessage,
)
from kernelagent.notebook.recorder import NotebookRecorder
from kernelagent.server.notebook_kernel import NotebookKernel, notebook_kernel_restarted
from kernelagent.session.session import SessionConfig
from kernelagent.session.store import SessionRecord, SessionStore
from kernelagent.session.stream import EventStream


class NotebookSession:
    """One agent session bound to a notebook; :meth:`run` once per instruction or decision."""

    def __init__(
        self,
        session_id: str,
        config: SessionConfig,
        model: Model,
        kernel: NotebookKernel,
        recorder: NotebookRecorder,
        notebook: str,
        description: str,
    ) -> None:
        self.id = session_id
        self.config = config
        self.model = model
        self.kernel = kernel
        self.recorder = recorder
        self.notebook = notebook
        """The person's notebook, relative to the server's root directory."""
        files = workspace_files(kernel.workspace)
        system = system_prompt(
            kernel.kernel_workspace,
            files,
            code_blocks=config.api == "code-blocks",
            host_workspace=kernel.workspace,
        )
        self.conversation = Conversation(system=f"{system}\n\n{description}")
        self.stream: EventStream | None = None
        self.loop: AgentLoop | None = None
        self.state = LoopState()
        self.started = False

    def attach(self, stream: EventStream, store: SessionStore) -> None:
        """Events of the next run go to ``stream`` (recorded, and kept in the store)."""
        stream.session_id = self.id
        stream.subscribe(self.recorder.handle, critical=True)
        stream.subscribe(lambda event: self._update_store(store, event))
        self.stream = stream
        if self.loop is not None:  # a decision or a follow-up: the same loop, new events
            return
        self.loop = AgentLoop(
            self.model,
            self.kernel,
            self.conversation,
            self._emit,
            limits=self.config.limits,
            state=self.state,
            checkpoint=lambda: self.recorder.set_conversation(self._conversation_state()),
            approval=self.config.approval,
            recover_kernel=notebook_kernel_restarted,
        )

    def register(self, store: SessionStore, task: str) -> None:
        now = time.time()
        store.create(
            SessionRecord(
                id=self.id,
                status="starting",
                task=task,
                created_at=now,
                updated_at=now,
                notebook=self.recorder.path,
                workspace=self.kernel.workspace,
                config={**self.config.model_dump(mode="json"), "in_notebook": self.notebook},
                owner_pid=os.getpid(),
            )
        )

    def decide(self, decision: Decision) -> None:
        assert self.loop is not None
        self.loop.decisions[decision.tool_call_id] = decision
        self.loop.gate.pending = None

    def _emit(self, event: Event) -> Event:
        """The loop's events go to the stream of the current run."""
        assert self.stream is not None
        return self.stream.emit(event)

    async def run(self, instruction: str | None) -> Outcome:
        assert self.stream is not None and self.loop is not None
        stream, loop = self.stream, self.loop
        if not self.started and instruction is not None:
            self.started = True
            stream.emit(
                SessionStarted(
                    task=instruction,
                    model=self.config.model,
                    sandbox="notebook",
                    workspace=str(self.kernel.workspace),
                    notebook_path=str(self.recorder.path),
                )
            )
        if instruction is not None:
            stream.emit(UserMessage(text=instruction))
        stream.emit(StatusChanged(status="running"))
        try:
            with reporting_retries(stream.emit):
                outcome = await loop.run(instruction)
        except asyncio.CancelledError:
            finished = loop.interrupted_cell_event()
            self.kernel.cancel()
            if finished is not None:
                stream.emit(finished)
            self._finish(Outcome("interrupted", reason="stopped by the user"))
            raise
        except Exception as error:
            self._finish(Outcome("failed", reason=f"{error.__class__.__name__}: {error}"))
            raise
        self._finish(outcome)
        return outcome

    def _finish(self, outcome: Outcome) -> None:
        assert self.stream is not None
        self.recorder.set_conversation(self._conversation_state())
        self.recorder.update_metadata(
            usage=self.state.usage.model_dump(),
            answer=outcome.answer,
            config=self.config.model_dump(mode="json"),
            in_notebook=self.notebook,
        )
        self.stream.emit(StatusChanged(status=outcome.status, reason=outcome.reason))
        self.stream.emit(
            SessionFinished(
                status=outcome.status,
                answer=outcome.answer,
                reason=outcome.reason,
                usage=self.state.usage,
            )
        )

    def _conversation_state(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation.model_dump(mode="json"),
            "steps": self.state.steps,
            "cells": self.state.cells,
            "usage": self.state.usage.model_dump(),
            "saved_at": time.time(),
        }

    def _update_store(self, store: SessionStore, event: Event) -> None:
        if isinstance(event, StatusChanged):
            fields: dict[str, Any] = {"status": event.status, "reason": event.reason}
            if event.status == "awaiting_approval":
                fields["pending"] = self.loop.pending if self.loop else None
            elif event.status == "running":
                fields["pending"] = None
            store.update(self.id, **fields)
        elif isinstance(event, UsageUpdated):
            store.update(
                self.id,
                steps=self.state.steps,
                input_tokens=event.total.input_tokens,
                output_tokens=event.total.output_tokens,
            )
        elif isinstance(event, CellFinished):
            store.update(self.id, cells=self.state.cells)
