"""The server extension's in-process state: sessions started, resumed and stopped.

Sessions run in background tasks of the server's event loop; nothing is tied to a
browser connection, so a session keeps running when the page closes. Their events go
to :mod:`kernelagent.server.event_log`. The manager raises kernelagent's domain errors
(:mod:`kernelagent.errors`); the handlers turn them into HTTP replies.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path
from typing import Any

from kernelagent.agent.approvals import Decision
from kernelagent.api import SessionResult, aresume, arun, served_model
from kernelagent.errors import (
    ConflictError,
    InvalidRequestError,
    KernelAgentError,
    UnavailableError,
)
from kernelagent.server.errors import HTTP_STATUS
from kernelagent.server.event_log import (
    EventDict,
    EventLogs,
    Listener,
    ServerEventStream,
    SessionEntry,
    unknown_session,
)
from kernelagent.server.notebook_sessions import NotebookSessions
from kernelagent.server.replay_request import replay_report
from kernelagent.server.request_policy import RequestPolicy
from kernelagent.server.requests import (
    ApproveRequest,
    CreateSessionRequest,
    FollowUpRequest,
    RejectRequest,
    ReplayRequest,
    parse_request,
)
from kernelagent.server.session_config import Defaults, session_config
from kernelagent.server.session_runs import SessionRuns
from kernelagent.server.views import display_path, session_view
from kernelagent.session.durable import check_resumable, decide
from kernelagent.session.session import Session, SessionConfig
from kernelagent.session.store import SessionNotFoundError, SessionRecord, SessionStore

log = logging.getLogger(__name__)

#: How long an approval or a follow-up waits for a run that has finished but is still
#: closing its sandbox channels and model client, before answering 409.
SETTLE_SECONDS = 30.0
SHUTDOWN_SECONDS = 60.0


class SessionManager:
    """Starts, resumes and stops sessions; their events are in ``logs``."""

    def __init__(
        self,
        *,
        store: SessionStore,
        root_dir: str | Path,
        sessions_dir: str | Path = "kernelagent-sessions",
        defaults: Defaults,
        workspaces_next_to_notebooks: bool = True,
        persist_events: bool = True,
        logger: logging.Logger | None = None,
        policy: RequestPolicy | None = None,
        cluster: str = "",
    ) -> None:
        self.store = store
        self.cluster = cluster
        """The Ray cluster the sessions started here run on ("": in this server)."""
        self.policy = policy or RequestPolicy(default_sandbox=defaults.sandbox)
        """What requests may choose: endpoints and keys, sandbox kind, egress."""
        self.root_dir = Path(root_dir).expanduser().resolve()
        self.sessions_path = (self.root_dir / Path(sessions_dir).expanduser()).resolve()
        self.defaults = defaults
        self.workspaces_next_to_notebooks = workspaces_next_to_notebooks
        self.log = logger or log
        self.logs = EventLogs(store if persist_events else None, self.log)
        self.runs = SessionRuns(store, self.log)
        self.notebooks = NotebookSessions(self)
        """Sessions that work in notebooks open in JupyterLab (kept in memory)."""
        self.closing = False

    @property
    def entries(self) -> dict[str, SessionEntry]:
        return self.logs.entries

    # -- reading ---------------------------------------------------------------------

    def get_record(self, session_id: str) -> SessionRecord:
        try:
            return self.store.get(session_id)
        except SessionNotFoundError:
            raise unknown_session(session_id) from None

    def list_sessions(self) -> list[dict[str, Any]]:
        return [self.record_json(record) for record in self.store.list()]

    def session_json(self, session_id: str) -> dict[str, Any]:
        return self.record_json(self.get_record(session_id))

    def events(self, session_id: str) -> list[EventDict]:
        return list(self.logs.entry(self.get_record(session_id).id).events)

    def running_ids(self) -> list[str]:
        return [entry.id for entry in self.entries.values() if entry.running]

    def record_json(self, record: SessionRecord) -> dict[str, Any]:
        """The session as the HTTP API shows it."""
        return session_view(record, self.entries.get(record.id), self.display_path)

    def display_path(self, path: Path) -> str:
        """Relative to the server's root directory when inside it, else absolute."""
        return display_path(self.root_dir, path)

    # -- live events -------------------------------------------------------------------

    def subscribe(
        self, session_id: str, listener: Listener, since: int = 0
    ) -> tuple[str, list[EventDict]]:
        """Add a listener for a session's live events; returns the full id and the
        logged events after ``since`` (to send first)."""
        full_id = self.get_record(session_id).id
        return full_id, self.logs.subscribe(full_id, listener, since)

    def unsubscribe(self, session_id: str, listener: Listener) -> None:
        self.logs.unsubscribe(session_id, listener)

    # -- starting and resuming ---------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a session; returns its record once it exists (its sandbox is up)."""
        self._check_open()
        self.logs.remember_loop()
        request = parse_request(CreateSessionRequest, body)
        data = [self.inside_root(path, "data file") for path in request.data]
        missing = [self.display_path(path) for path in data if not path.is_file()]
        if missing:
            raise InvalidRequestError(
                f"data file not found: {', '.join(missing)}",
                hint=f"data paths are relative to the server's root directory ({self.root_dir})",
            )
        config = self._config(request)
        slug = self._new_slug(request.task)
        self.sessions_path.mkdir(parents=True, exist_ok=True)
        notebook = self.sessions_path / f"{slug}.ipynb"
        if self.workspaces_next_to_notebooks:
            workspace = self.sessions_path / slug
        else:
            workspace = self.store.home / "workspaces" / slug

        stream = ServerEventStream("")
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_session(session: Session) -> None:
            entry = self.logs.entry(session.id)
            entry.task = task
            self.logs.attach(entry, stream)
            if not started.done():
                started.set_result(session.id)

        def on_placed(session_id: str) -> None:
            """On a cluster: a node took the session; its events are logged from now on."""
            entry = self.logs.entry(session_id)
            entry.task = task
            self.logs.attach(entry, stream)
            entry.ran_here = False  # its sandbox is the node's to shut down
            if not started.done():
                started.set_result(session_id)

        async def run() -> SessionResult:
            async with served_model(config):  # a lease on the machine's model server, if local
                return await arun(
                    request.task,
                    data=data,
                    workspace=workspace,
                    notebook=notebook,
                    config=config,
                    api_key=self._api_key(config.base_url),
                    on_session=None if self.cluster else on_session,
                    on_placed=on_placed,
                    store=self.store,
                    stream=stream,
                    cluster=self.cluster,
                )

        task = self.runs.spawn(stream, run(), f"kernelagent session {slug}")
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            return self.session_json(await self._stored(started.result(), task))
        if task.cancelled():
            raise UnavailableError(
                "the session was cancelled before it started", hint="the server is shutting down"
            )
        raise self._start_error(task.exception())

    async def _stored(self, session_id: str, task: asyncio.Task[Any]) -> str:
        """The session once its record exists: at once here; on a cluster when the node
        has started its sandbox (or the error that stopped it first)."""
        while self.cluster and not self._exists(session_id):
            if task.done():
                events = self.logs.entry(session_id).events
                error = next((e for e in reversed(events) if e["type"] == "error"), None)
                if error is not None:
                    raise KernelAgentError(error.get("message", ""), error.get("hint", ""))
                raise self._start_error(None if task.cancelled() else task.exception())
            await asyncio.sleep(0.1)
        return session_id

    def _exists(self, session_id: str) -> bool:
        try:
            self.store.get(session_id)
        except SessionNotFoundError:
            return False
        return True

    def _config(self, request: CreateSessionRequest) -> SessionConfig:
        return session_config(request, self.defaults, self.policy)

    def _api_key(self, base_url: str | None) -> str | None:
        """The key a session's model requests carry: the server's only for its own base URL."""
        return self.policy.endpoint(base_url).api_key

    def _start_error(self, error: BaseException | None) -> BaseException:
        """What the request that started a session answers when it failed to start."""
        if error is None:
            return KernelAgentError(
                "the session ended before it started", hint="see the Jupyter server log"
            )
        if any(isinstance(error, kind) for kind, _ in HTTP_STATUS):
            return error
        self.log.error("kernelagent: a session failed to start", exc_info=error)
        return KernelAgentError(
            "the session failed to start: internal error", "see the Jupyter server log"
        )

    async def follow_up(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        instruction = parse_request(FollowUpRequest, body).instruction
        record = await self._idle_record(session_id)
        if record.status == "awaiting_approval":
            cell = record.pending.cell_id if record.pending else "?"
            raise ConflictError(
                f"session {record.id} waits for approval of cell {cell}",
                hint="approve or reject the pending action first (POST .../approve or .../reject)",
            )
        if (live := self.notebooks.get(record)) is not None:
            return self.notebooks.resume(live, instruction=instruction)
        check_resumable(record, instruction, None)
        return self._resume(record, instruction=instruction)

    async def decide(self, session_id: str, decision: str, body: dict[str, Any]) -> dict[str, Any]:
        """Approve (optionally with edited code) or reject the pending action, then run on."""
        record = await self._idle_record(session_id)
        if record.status != "awaiting_approval" or record.pending is None:
            raise ConflictError(
                f"session {record.id} has no pending action (it is {record.status})",
                hint="only a session in status awaiting_approval can be approved or rejected",
            )
        if decision == "approved":
            code = parse_request(ApproveRequest, body).code
            choice = decide(record, "approved", edited_code=code)
        else:
            reason = parse_request(RejectRequest, body).reason
            choice = decide(record, "rejected", reason=reason)
        if (live := self.notebooks.get(record)) is not None:
            return self.notebooks.resume(live, decision=choice)
        check_resumable(record, None, choice)
        return self._resume(record, decision=choice)

    def stop(self, session_id: str) -> dict[str, Any]:
        record = self.get_record(session_id)
        entry = self.entries.get(record.id)
        if entry is None or entry.task is None or not entry.running or entry.finishing:
            raise ConflictError(
                f"session {record.id} is not running in this server (it is {record.status})",
                hint="only a running session can be stopped",
            )
        entry.task.cancel()
        return self.record_json(record)

    async def _idle_record(self, session_id: str) -> SessionRecord:
        """The session's record, once no run of it is active here; 409 if one is."""
        self._check_open()
        self.logs.remember_loop()
        record = self.get_record(session_id)
        entry = self.entries.get(record.id)
        if entry is not None and entry.task is not None and entry.finishing:
            await asyncio.wait({entry.task}, timeout=SETTLE_SECONDS)
        if entry is not None and entry.running:
            raise ConflictError(
                f"session {record.id} is running",
                hint="wait until it finishes, or stop it (POST .../stop)",
            )
        return self.get_record(record.id)

    def _resume(
        self,
        record: SessionRecord,
        *,
        instruction: str | None = None,
        decision: Decision | None = None,
    ) -> dict[str, Any]:
        kind = (record.config.get("sandbox") or {}).get("kind", "docker")
        self.policy.check_sandbox(kind)
        api_key = self._api_key(record.config.get("base_url"))
        entry = self.logs.entry(record.id)
        stream = ServerEventStream(record.id, first_seq=entry.last_seq + 1)
        self.logs.attach(entry, stream)
        entry.ran_here = not self.cluster
        run = aresume(
            record.id,
            instruction,
            decision=decision,
            api_key=api_key,
            store=self.store,
            stream=stream,
            cluster=self.cluster,
        )
        entry.task = self.runs.spawn(stream, run, f"kernelagent session {record.id}")
        return self.record_json(record)

    # -- replay --------------------------------------------------------------------------

    # -- replay and shutting down -----------------------------------------------------------

    async def replay(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_open()
        request = parse_request(ReplayRequest, body)
        path = self.inside_root(request.path, "notebook")
        sandbox = request.sandbox or self.defaults.sandbox
        self.policy.check_sandbox(sandbox)
        shown = self.display_path(path)
        return await replay_report(path, shown, self.root_dir, sandbox, request.until)

    async def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop every running session (they become interrupted, their notebooks stay
        valid), then shut down the sandboxes of the sessions run here."""
        self.closing = True
        await self.runs.shutdown(list(self.entries.values()), timeout)

    # -- helpers ---------------------------------------------------------------------------

    def inside_root(self, relative: str, what: str) -> Path:
        """A path given relative to the server's root directory, refused if it leaves it."""
        path = (self.root_dir / relative).resolve()
        if path != self.root_dir and self.root_dir not in path.parents:
            raise InvalidRequestError(
                f"{what} {relative!r} is outside the server's root directory",
                hint=f"paths are relative to {self.root_dir}",
            )
        return path

    def _new_slug(self, task: str) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")[:40].rstrip("-") or "session"
        while True:
            slug = f"{words}-{uuid.uuid4().hex[:6]}"
            taken = (self.sessions_path / f"{slug}.ipynb").exists()
            if not taken and not (self.sessions_path / slug).exists():
                return slug

    def _check_open(self) -> None:
        if self.closing:
            raise UnavailableError("the server is shutting down", hint="start JupyterLab again")
