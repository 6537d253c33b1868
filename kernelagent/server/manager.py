"""The server extension's in-process state: per session an event log, listeners and a task.

Sessions run in background tasks of the server's event loop; nothing is tied to a
browser connection, so a session keeps running when the page closes. Each session has
one event log whose ``seq`` numbers go on across runs (the task, then every follow-up
or approval): every run gets a new :class:`ServerEventStream` that starts numbering
after the last logged event, so a client that reconnects with ``since=N`` catches up.
The log is also appended to ``<store home>/server-events/<id>.jsonl`` so a restarted
server still knows a session's history and keeps numbering after it.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tornado import web

from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.agent.loop import Decision
from kernelagent.agent.model import ModelAuthError, ModelError, ModelNotFoundError
from kernelagent.api import SessionResult, aresume, arun, build_config, served_model
from kernelagent.events import Error, Event, SessionFinished, StatusChanged
from kernelagent.localmodel import recommended_api
from kernelagent.localmodel.store import LocalModelError
from kernelagent.notebook.recorder import NotebookFormatError
from kernelagent.replay.replay import ReplayError, ReplayOptions, replay_notebook
from kernelagent.replay.workspace_inputs import MissingInputError
from kernelagent.sandbox.docker_provisioner import DockerUnavailableError
from kernelagent.sandbox.sandbox import Sandbox, SandboxError
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.server.request_policy import PolicyError, RequestPolicy
from kernelagent.session.durable import StoreUpdater, check_resumable, decide
from kernelagent.session.session import Session
from kernelagent.session.store import (
    SessionNotFoundError,
    SessionRecord,
    SessionStateError,
    SessionStore,
)
from kernelagent.session.stream import EventStream

log = logging.getLogger(__name__)

API_KINDS = ("responses", "chat", "code-blocks")
SANDBOX_KINDS = ("docker", "local")
MAX_ATTEMPTS = 8
APPROVAL_MODES = ("never", "shell", "always")
PENDING_FIELDS = ("cell_id", "kind", "code", "code_sha256", "reason")
#: Events worth keeping on disk; deltas are superseded by the complete assistant text.
_NOT_PERSISTED = ("assistant_text_delta",)
#: How long an approval or a follow-up waits for a run that has finished but is still
#: closing its sandbox channels and model client, before answering 409.
SETTLE_SECONDS = 30.0
SHUTDOWN_SECONDS = 60.0

EventDict = dict[str, Any]
T = TypeVar("T")
Listener = Callable[[EventDict], None]


class ApiError(web.HTTPError):
    """An HTTP error whose JSON body is ``{"error": ..., "hint": ...}``."""

    def __init__(self, status: int, error: str, hint: str = "") -> None:
        # tornado formats log_message with %; the message is ours, not a format string.
        super().__init__(status, log_message=error.replace("%", "%%"))
        self.error = error
        self.hint = hint


@dataclass
class Defaults:
    """What a new session uses when the request does not say."""

    model: str
    base_url: str | None = None
    api: str = "responses"
    sandbox: str = "docker"
    max_steps: int = 30
    attempts: int = 1
    cell_timeout: float = 300.0


def describe_error(error: BaseException) -> tuple[str, str]:
    """A message and a hint for an exception, for an ``error`` event or an HTTP reply."""
    if isinstance(error, ModelError):
        return error.message, error.hint
    if isinstance(error, DockerUnavailableError):
        return str(error), "start Docker (or create the session with sandbox 'local', which is not isolated)"
    if isinstance(error, SandboxError):
        return str(error), "check that Docker runs and the sandbox image exists (kernelagent image build)"
    if isinstance(error, (SessionStateError, FileNotFoundError, LocalModelError)):
        return str(error), ""
    return f"{error.__class__.__name__}: {error}", "see the Jupyter server log"


class ServerEventStream(EventStream):
    """An :class:`EventStream` that learns its :class:`Session` and reports failures.

    * The session subscribes a :class:`StoreUpdater` (in ``register`` and in
      ``resume_session``); that tells the stream which Session it carries, so the
      server can shut its sandbox down.
    * When the session fails because of an exception (``Session.run`` emits the
      ``failed`` status while handling it), an ``error`` event with the exception's
      message and hint goes out first, so a client sees ``error``, then
      ``status_changed`` and ``session_finished`` with status failed.
    """

    def __init__(self, session_id: str, first_seq: int = 1) -> None:
        super().__init__(session_id, first_seq)
        self.session: Session | None = None
        self.finished = False
        self.error_reported = False
        self.attached = False
        """True once the manager logs this stream's events under a session id."""

    def subscribe(self, subscriber: Callable[[Event], None], *, critical: bool = False) -> None:
        if isinstance(subscriber, StoreUpdater):
            self.session = subscriber.session
        super().subscribe(subscriber, critical=critical)

    def emit(self, event: Event) -> Event:
        own = event.attempt is None  # not one of a parallel attempt's forwarded events
        if own and isinstance(event, StatusChanged) and event.status == "failed" and not self.error_reported:
            error = sys.exc_info()[1]
            if isinstance(error, Exception):
                self.report(error)
        if own and isinstance(event, SessionFinished):
            self.finished = True
        return super().emit(event)

    def report(self, error: BaseException) -> None:
        self.error_reported = True
        message, hint = describe_error(error)
        super().emit(Error(message=message, hint=hint))


@dataclass
class SessionEntry:
    """What the server holds for one session."""

    id: str
    events: list[EventDict] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    task: asyncio.Task[Any] | None = None
    stream: ServerEventStream | None = None
    ran_here: bool = False
    """A run of this session happened in this server (its sandbox is ours to stop)."""

    @property
    def last_seq(self) -> int:
        return int(self.events[-1]["seq"]) if self.events else 0

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def finishing(self) -> bool:
        """The run has emitted session_finished but its task is still closing things."""
        return self.running and self.stream is not None and self.stream.finished

    def since(self, seq: int) -> list[EventDict]:
        start = bisect.bisect_right([event["seq"] for event in self.events], seq)
        return self.events[start:]


class SessionManager:
    """Starts, resumes and stops sessions; keeps their event logs and listeners."""

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
    ) -> None:
        self.store = store
        self.policy = policy or RequestPolicy(default_sandbox=defaults.sandbox)
        """What requests may choose: endpoints and keys, sandbox kind, egress."""
        self.root_dir = Path(root_dir).expanduser().resolve()
        self.sessions_path = (self.root_dir / Path(sessions_dir).expanduser()).resolve()
        self.defaults = defaults
        self.workspaces_next_to_notebooks = workspaces_next_to_notebooks
        self.events_dir: Path | None = store.home / "server-events" if persist_events else None
        self.log = logger or log
        self.entries: dict[str, SessionEntry] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.closing = False

    # -- reading ---------------------------------------------------------------------

    def get_record(self, session_id: str) -> SessionRecord:
        try:
            return self.store.get(session_id)
        except SessionNotFoundError:
            raise ApiError(
                404,
                f"no session {session_id!r}",
                hint="GET kernelagent/api/sessions lists the sessions this server knows",
            ) from None

    def list_sessions(self) -> list[dict[str, Any]]:
        return [self.record_json(record) for record in self.store.list()]

    def session_json(self, session_id: str) -> dict[str, Any]:
        return self.record_json(self.get_record(session_id))

    def events(self, session_id: str) -> list[EventDict]:
        return list(self.entry(self.get_record(session_id).id).events)

    def running_ids(self) -> list[str]:
        return [entry.id for entry in self.entries.values() if entry.running]

    def record_json(self, record: SessionRecord) -> dict[str, Any]:
        """The session as the HTTP API shows it."""
        entry = self.entries.get(record.id)
        status, reason, pending = record.status, record.reason, record.pending
        busy = entry is not None and entry.running
        if busy and not entry.finishing and status not in ("running", "starting"):  # type: ignore[union-attr]
            # A follow-up or an approval is being resumed; the store changes when it runs.
            status, reason, pending = "starting", "resuming", None
        elif not busy and status in ("running", "starting") and not _owner_alive(record.owner_pid):
            status = "interrupted"
            reason = record.reason or "the process that ran this session stopped"
        return {
            "id": record.id,
            "status": status,
            "reason": reason,
            "task": record.task,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "steps": record.steps,
            "cells": record.cells,
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            "notebook": self.display_path(record.notebook),
            "pending": {name: getattr(pending, name) for name in PENDING_FIELDS} if pending else None,
        }

    def display_path(self, path: Path) -> str:
        """Relative to the server's root directory when inside it, else absolute."""
        absolute = Path(path).expanduser().resolve()
        try:
            return absolute.relative_to(self.root_dir).as_posix()
        except ValueError:
            return str(absolute)

    # -- the event log -----------------------------------------------------------------

    def entry(self, session_id: str) -> SessionEntry:
        entry = self.entries.get(session_id)
        if entry is None:
            entry = self.entries[session_id] = SessionEntry(session_id, events=self._load_events(session_id))
        return entry

    def subscribe(self, session_id: str, listener: Listener, since: int = 0) -> tuple[str, list[EventDict]]:
        """Add a listener for a session's live events; returns the full id and the
        logged events after ``since`` (to send first)."""
        entry = self.entry(self.get_record(session_id).id)
        entry.listeners.append(listener)
        return entry.id, entry.since(since)

    def unsubscribe(self, session_id: str, listener: Listener) -> None:
        entry = self.entries.get(session_id)
        if entry is not None and listener in entry.listeners:
            entry.listeners.remove(listener)

    def _attach(self, entry: SessionEntry, stream: ServerEventStream) -> None:
        entry.stream = stream
        entry.ran_here = True
        stream.attached = True
        stream.subscribe(lambda event: self._on_event(entry, event))

    def _on_event(self, entry: SessionEntry, event: Event) -> None:
        data = event.model_dump(mode="json")
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._append, entry, data)
        else:
            self._append(entry, data)

    def _append(self, entry: SessionEntry, data: EventDict) -> None:
        entry.events.append(data)
        self._persist(entry.id, data)
        for listener in list(entry.listeners):
            try:
                listener(data)
            except Exception:  # one broken listener must not stop the others
                self.log.exception("kernelagent: an event listener of session %s failed", entry.id)
                self.unsubscribe(entry.id, listener)

    def _events_file(self, session_id: str) -> Path | None:
        if self.events_dir is None or not re.fullmatch(r"[\w-]+", session_id):
            return None
        return self.events_dir / f"{session_id}.jsonl"

    def _persist(self, session_id: str, data: EventDict) -> None:
        path = self._events_file(session_id)
        if path is None or data.get("type") in _NOT_PERSISTED:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(data) + "\n")
        except OSError as error:
            self.log.warning("kernelagent: cannot save the event log of %s: %s", session_id, error)

    def _load_events(self, session_id: str) -> list[EventDict]:
        path = self._events_file(session_id)
        if path is None or not path.is_file():
            return []
        events: list[EventDict] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if (
                isinstance(data, dict)
                and isinstance(data.get("seq"), int)
                and (not events or data["seq"] > events[-1]["seq"])
            ):
                events.append(data)
        return events

    # -- starting and resuming ---------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a session; returns its record once it exists (its sandbox is up)."""
        self._check_open()
        self._remember_loop()
        task_text = _required_text(body, "task")
        data = [self.inside_root(path, "data file") for path in _string_list(body, "data")]
        missing = [self.display_path(path) for path in data if not path.is_file()]
        if missing:
            raise ApiError(
                400,
                f"data file not found: {', '.join(missing)}",
                hint=f"data paths are relative to the server's root directory ({self.root_dir})",
            )
        config = self._config(body)
        slug = self._new_slug(task_text)
        self.sessions_path.mkdir(parents=True, exist_ok=True)
        notebook = self.sessions_path / f"{slug}.ipynb"
        if self.workspaces_next_to_notebooks:
            workspace = self.sessions_path / slug
        else:
            workspace = self.store.home / "workspaces" / slug

        stream = ServerEventStream("")
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_session(session: Session) -> None:
            entry = self.entry(session.id)
            entry.task = task
            self._attach(entry, stream)
            if not started.done():
                started.set_result(session.id)

        async def run() -> SessionResult:
            async with served_model(config):  # a lease on the machine's model server, if local
                return await arun(
                    task_text,
                    data=data,
                    workspace=workspace,
                    notebook=notebook,
                    config=config,
                    api_key=self._api_key(config.base_url),
                    on_session=on_session,
                    store=self.store,
                    stream=stream,
                )

        task = self._spawn(self._drive(stream, run()), f"kernelagent session {slug}")
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            return self.session_json(started.result())
        if task.cancelled():
            raise ApiError(503, "the session was cancelled before it started", hint="the server is shutting down")
        raise self._start_error(task.exception())

    def _config(self, body: dict[str, Any]) -> Any:
        api = _choice(body, "api", API_KINDS, self.defaults.api)
        sandbox = _choice(body, "sandbox", SANDBOX_KINDS, self.defaults.sandbox)
        _apply_policy(self.policy.check_sandbox, sandbox)
        network_allow = _apply_policy(self.policy.network_for, body.get("allow_net"), sandbox)
        approve = _choice(body, "approve", APPROVAL_MODES, "never")
        max_steps = body.get("max_steps", self.defaults.max_steps)
        if max_steps is None:
            max_steps = self.defaults.max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ApiError(400, f"max_steps must be a positive integer, not {max_steps!r}")
        attempts = body.get("attempts")
        if attempts is None:
            attempts = self.defaults.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise ApiError(400, f"attempts must be an integer from 1 to {MAX_ATTEMPTS}, not {attempts!r}")
        model = _optional_text(body, "model") or self.defaults.model
        endpoint = _apply_policy(self.policy.endpoint, _optional_text(body, "base_url"))
        base_url = endpoint.base_url or self.defaults.base_url
        config = build_config(
            model=model,
            api=api,  # type: ignore[arg-type]
            base_url=base_url,
            sandbox=sandbox,
            max_steps=max_steps,
            cell_timeout=self.defaults.cell_timeout,
            attempts=attempts,
        )
        config.approval = ApprovalPolicy(mode=approve)  # type: ignore[arg-type]
        try:
            config.sandbox = config.sandbox.allowing(network_allow)
        except ValueError as error:
            raise ApiError(400, str(error), hint="allow_net entries are HOST[:PORT]") from None
        if config.sandbox.network_allow:
            config.sandbox.network_headers = dict(self.policy.network_headers)
        if base_url is None and (model == "local" or model.startswith("local:")):
            config.local_model = model.removeprefix("local").removeprefix(":")  # "" = the default
            config.api = api if body.get("api") else recommended_api(config.local_model or None)
        return config

    def _api_key(self, base_url: str | None) -> str | None:
        """The key a session's model requests carry: the server's only for its own base URL."""
        return _apply_policy(self.policy.endpoint, base_url).api_key

    def _start_error(self, error: BaseException | None) -> ApiError:
        if error is None:
            return ApiError(500, "the session ended before it started", hint="see the Jupyter server log")
        message, hint = describe_error(error)
        if isinstance(error, (FileNotFoundError, ModelAuthError, ModelNotFoundError)):
            status = 400
        elif isinstance(error, ModelError):
            status = 502
        elif isinstance(error, (DockerUnavailableError, SandboxError, LocalModelError)):
            status = 503
        else:  # the detail goes to the log, not to the client
            self.log.error("kernelagent: a session failed to start", exc_info=error)
            return ApiError(500, "the session failed to start: internal error", "see the Jupyter server log")
        return ApiError(status, message, hint)

    async def follow_up(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        instruction = _required_text(body, "instruction")
        record = await self._idle_record(session_id)
        if record.status == "awaiting_approval":
            raise ApiError(
                409,
                f"session {record.id} waits for approval of cell {record.pending.cell_id if record.pending else '?'}",
                hint="approve or reject the pending action first (POST .../approve or .../reject)",
            )
        self._check_resumable(record, instruction, None)
        return self._resume(record, instruction=instruction)

    async def decide(self, session_id: str, decision: str, body: dict[str, Any]) -> dict[str, Any]:
        """Approve (optionally with edited code) or reject the pending action, then run on."""
        record = await self._idle_record(session_id)
        if record.status != "awaiting_approval" or record.pending is None:
            raise ApiError(
                409,
                f"session {record.id} has no pending action (it is {record.status})",
                hint="only a session in status awaiting_approval can be approved or rejected",
            )
        try:
            if decision == "approved":
                code = body.get("code")
                if code is not None and not isinstance(code, str):
                    raise ApiError(400, "code must be a string (the edited code to run instead)")
                choice = decide(record, "approved", edited_code=code)
            else:
                reason = body.get("reason") or ""
                if not isinstance(reason, str):
                    raise ApiError(400, "reason must be a string")
                choice = decide(record, "rejected", reason=reason)
        except SessionStateError as error:
            raise ApiError(409, str(error)) from None
        self._check_resumable(record, None, choice)
        return self._resume(record, decision=choice)

    def stop(self, session_id: str) -> dict[str, Any]:
        record = self.get_record(session_id)
        entry = self.entries.get(record.id)
        if entry is None or not entry.running or entry.finishing:
            raise ApiError(
                409,
                f"session {record.id} is not running in this server (it is {record.status})",
                hint="only a running session can be stopped",
            )
        assert entry.task is not None
        entry.task.cancel()
        return self.record_json(record)

    async def _idle_record(self, session_id: str) -> SessionRecord:
        """The session's record, once no run of it is active here; 409 if one is."""
        self._check_open()
        self._remember_loop()
        record = self.get_record(session_id)
        entry = self.entries.get(record.id)
        if entry is not None and entry.finishing:
            assert entry.task is not None
            await asyncio.wait({entry.task}, timeout=SETTLE_SECONDS)
        if entry is not None and entry.running:
            raise ApiError(
                409,
                f"session {record.id} is running",
                hint="wait until it finishes, or stop it (POST .../stop)",
            )
        return self.get_record(record.id)

    def _check_resumable(self, record: SessionRecord, instruction: str | None, decision: Decision | None) -> None:
        try:
            check_resumable(record, instruction, decision)
        except SessionStateError as error:
            raise ApiError(409, str(error)) from None

    def _resume(
        self, record: SessionRecord, *, instruction: str | None = None, decision: Decision | None = None
    ) -> dict[str, Any]:
        _apply_policy(self.policy.check_sandbox, (record.config.get("sandbox") or {}).get("kind", "docker"))
        api_key = self._api_key(record.config.get("base_url"))
        entry = self.entry(record.id)
        stream = ServerEventStream(record.id, first_seq=entry.last_seq + 1)
        self._attach(entry, stream)
        run = aresume(
            record.id, instruction, decision=decision, api_key=api_key, store=self.store, stream=stream
        )
        entry.task = self._spawn(self._drive(stream, run), f"kernelagent session {record.id}")
        return self.record_json(record)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drive(self, stream: ServerEventStream, run: Coroutine[Any, Any, SessionResult]) -> SessionResult | None:
        """Run a session to its stop; failures after it exists become events."""
        try:
            return await run
        except asyncio.CancelledError:
            if stream.attached and not stream.finished:
                stream.emit(SessionFinished(status="interrupted", reason="stopped before the session ran"))
            raise
        except Exception as error:  # reported to the client as events
            if not stream.attached:
                raise  # no session yet: the request that started it answers with the error
            self.log.warning("kernelagent: session %s stopped with %r", stream.session_id, error)
            if not stream.error_reported:
                stream.report(error)
            if not stream.finished:
                message, _ = describe_error(error)
                stream.emit(SessionFinished(status="failed", reason=message))
            return None

    # -- replay --------------------------------------------------------------------------

    async def replay(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_open()
        path = self.inside_root(_required_text(body, "path"), "notebook")
        if not path.is_file():
            raise ApiError(
                400,
                f"notebook not found: {self.display_path(path)}",
                hint=f"the path is relative to the server's root directory ({self.root_dir})",
            )
        until = body.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, str))):
            raise ApiError(400, "until must be a code-cell number or a cell id")
        sandbox = _choice(body, "sandbox", SANDBOX_KINDS, self.defaults.sandbox)
        _apply_policy(self.policy.check_sandbox, sandbox)
        options = ReplayOptions(sandbox=SandboxSettings.model_validate({"kind": sandbox}), until=until)
        try:
            report = await replay_notebook(path, options)
        except (ReplayError, NotebookFormatError, MissingInputError) as error:
            raise ApiError(400, str(error), hint="replay runs the code cells of a valid Python notebook") from None
        except (DockerUnavailableError, SandboxError) as error:
            raise ApiError(503, *describe_error(error)) from None
        if report.workspace is not None:
            shutil.rmtree(report.workspace, ignore_errors=True)
        return report.as_dict()

    # -- shutting down -------------------------------------------------------------------

    async def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop every running session (they become interrupted, their notebooks stay
        valid), then shut down the sandboxes of the sessions run here."""
        self.closing = True
        tasks = list(self._tasks)
        winding_down = {entry.task for entry in self.entries.values() if entry.finishing}
        for task in tasks:
            if task not in winding_down:  # those only close their sandbox and model client
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for entry in list(self.entries.values()):
            if entry.ran_here:
                await self._stop_sandbox(entry)

    async def _stop_sandbox(self, entry: SessionEntry) -> None:
        try:
            record = self.store.get(entry.id)
        except SessionNotFoundError:
            return
        if not record.sandbox_state:
            return
        try:
            session = entry.stream.session if entry.stream else None
            if session is not None:
                await asyncio.wait_for(session.sandbox.shutdown(), timeout=30)
            else:
                sandbox = await asyncio.wait_for(Sandbox.attach(record.sandbox_state), timeout=30)
                await asyncio.wait_for(sandbox.shutdown(), timeout=30)
        except Exception as error:  # noqa: BLE001 - gone already or unreachable: fix the record
            self.log.info("kernelagent: sandbox of %s: %s", entry.id, error)
        try:
            self.store.update(entry.id, sandbox_state=None)
        except Exception:
            self.log.exception("kernelagent: cannot update session %s", entry.id)

    # -- helpers ---------------------------------------------------------------------------

    def inside_root(self, relative: str, what: str) -> Path:
        """A path given relative to the server's root directory, refused if it leaves it."""
        path = (self.root_dir / relative).resolve()
        if path != self.root_dir and self.root_dir not in path.parents:
            raise ApiError(
                400,
                f"{what} {relative!r} is outside the server's root directory",
                hint=f"paths are relative to {self.root_dir}",
            )
        return path

    def _new_slug(self, task: str) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")[:40].rstrip("-") or "session"
        while True:
            slug = f"{words}-{uuid.uuid4().hex[:6]}"
            if not (self.sessions_path / f"{slug}.ipynb").exists() and not (self.sessions_path / slug).exists():
                return slug

    def _check_open(self) -> None:
        if self.closing:
            raise ApiError(503, "the server is shutting down", hint="start JupyterLab again")

    def _remember_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()


def _apply_policy(check: Callable[..., T], *args: Any) -> T:
    """Run a RequestPolicy check; its refusal becomes the HTTP error the client gets."""
    try:
        return check(*args)
    except PolicyError as error:
        raise ApiError(error.status, error.error, error.hint) from None


def _owner_alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _required_text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key} is required (a non-empty string)")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value


def _string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ApiError(400, f"{key} must be a list of paths relative to the server's root directory")
    return value


def _choice(body: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(key) or default
    if value not in allowed:
        raise ApiError(400, f"unknown {key} {value!r}", hint=f"use one of: {', '.join(allowed)}")
    return str(value)
