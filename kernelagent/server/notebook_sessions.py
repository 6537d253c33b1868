"""The server's sessions that work in notebooks open in JupyterLab: starting them, the
panel's cell results, and resuming them after an approval or with a follow-up."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kernelagent.agent.approvals import Decision
from kernelagent.api import check_model_server, model_for
from kernelagent.errors import ConflictError, InvalidRequestError
from kernelagent.notebook.recorder import NotebookRecorder
from kernelagent.sandbox.maintenance import recorded_kernelspec
from kernelagent.server.event_log import ServerEventStream, unknown_session
from kernelagent.server.notebook_context import describe_notebook
from kernelagent.server.notebook_kernel import NotebookKernel
from kernelagent.server.notebook_requests import CellResultRequest, NotebookSessionRequest
from kernelagent.server.notebook_session import NotebookSession
from kernelagent.server.requests import parse_request
from kernelagent.session.store import SessionRecord

if TYPE_CHECKING:
    from kernelagent.server.manager import SessionManager


class NotebookSessions:
    """The notebook sessions this server runs (they live in its memory)."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.live: dict[str, NotebookSession] = {}

    def get(self, record: SessionRecord) -> NotebookSession | None:
        """The live session of ``record``; ConflictError for a notebook session this server
        no longer runs (it was started by a server that stopped)."""
        live = self.live.get(record.id)
        if live is None and record.config.get("in_notebook"):
            raise ConflictError(
                f"session {record.id} worked in {record.config['in_notebook']} under a Jupyter "
                "server that has stopped",
                hint='ask again with "Ask kernelagent in this notebook"',
            )
        return live

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        manager = self.manager
        manager._check_open()
        manager.logs.remember_loop()
        request = parse_request(NotebookSessionRequest, body)
        if request.data or (request.attempts or 1) > 1:
            raise InvalidRequestError(
                "data files and parallel attempts do not apply to a session in a notebook",
                hint="the agent works on the notebook's own kernel and files",
            )
        path = manager.inside_root(request.notebook_path, "notebook")
        if not path.is_file():
            raise InvalidRequestError(
                f"notebook not found: {request.notebook_path}",
                hint="save the notebook first; paths are relative to the server's root directory",
            )
        config = manager._config(request)
        if config.local_model is not None:
            raise InvalidRequestError(
                "a model kernelagent serves itself cannot work in a notebook yet",
                hint="give the model server's base URL instead",
            )
        api_key = manager._api_key(config.base_url)
        await check_model_server(config, api_key)
        session_id = uuid.uuid4().hex[:12]
        manager.sessions_path.mkdir(parents=True, exist_ok=True)
        recorder = NotebookRecorder(
            manager.sessions_path / f"{manager._new_slug(request.task)}.ipynb",
            session_id=session_id,
            kernelspec=recorded_kernelspec(config.sandbox),
        )
        session = NotebookSession(
            session_id,
            config,
            model_for(config, api_key),
            NotebookKernel(path.parent),
            recorder,
            manager.display_path(path),
            describe_notebook(request),
        )
        session.register(manager.store, request.task)
        self.live[session_id] = session
        self._spawn(session, request.task)
        return manager.session_json(session_id)

    def deliver(self, session_id: str, cell_id: str, body: dict[str, Any]) -> None:
        """The panel ran ``cell_id`` in the notebook: hand its outputs to the loop."""
        record = self.manager.get_record(session_id)
        session = self.get(record)
        if session is None:
            raise unknown_session(session_id)
        session.kernel.deliver(cell_id, parse_request(CellResultRequest, body))

    def resume(
        self,
        session: NotebookSession,
        *,
        instruction: str | None = None,
        decision: Decision | None = None,
    ) -> dict[str, Any]:
        if decision is not None:
            session.decide(decision)
        self._spawn(session, instruction)
        return self.manager.session_json(session.id)

    def _spawn(self, session: NotebookSession, instruction: str | None) -> None:
        manager = self.manager
        entry = manager.logs.entry(session.id)
        stream = ServerEventStream(session.id, first_seq=entry.last_seq + 1)
        session.attach(stream, manager.store)
        manager.logs.attach(entry, stream)
        entry.task = manager.runs.spawn(
            stream, session.run(instruction), f"kernelagent notebook session {session.id}"
        )
