"""Per session, the server's event log: the events so far, the listeners of live ones,
and the run that produces them.

Each session has one log whose ``seq`` numbers go on across runs (the task, then every
follow-up or approval): every run gets a new :class:`ServerEventStream` that starts
numbering after the last logged event, so a client that reconnects with ``since=N``
catches up. The log is also kept in the session store (its ``server_events`` table), so a
restarted server, or another server on the same store, knows a session's history and
keeps numbering after it.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelagent.errors import NotFoundError
from kernelagent.events import Error, Event, SessionFinished, StatusChanged
from kernelagent.server.errors import describe_error
from kernelagent.session.durable import StoreUpdater
from kernelagent.session.session import Session
from kernelagent.session.store import SessionStore
from kernelagent.session.stream import EventStream

EventDict = dict[str, Any]
Listener = Callable[[EventDict], None]

NOT_PERSISTED = ("assistant_text_delta",)
"""Events not worth keeping on disk; deltas are superseded by the complete assistant text."""


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
        failed = isinstance(event, StatusChanged) and event.status == "failed"
        if own and failed and not self.error_reported:
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


class EventLogs:
    """The sessions' entries, their event files, and the fan-out to listeners.

    Events may come from other threads (a session's sandbox callbacks); they are
    appended on the server's event loop, in order.
    """

    def __init__(self, store: SessionStore | None, log: logging.Logger) -> None:
        self.store = store
        """Where the events are kept (None: in memory only)."""
        self.log = log
        self.entries: dict[str, SessionEntry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def remember_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()

    def entry(self, session_id: str) -> SessionEntry:
        entry = self.entries.get(session_id)
        if entry is None:
            entry = SessionEntry(session_id, events=self._load(session_id))
            self.entries[session_id] = entry
        return entry

    def subscribe(self, session_id: str, listener: Listener, since: int) -> list[EventDict]:
        entry = self.entry(session_id)
        entry.listeners.append(listener)
        return entry.since(since)

    def unsubscribe(self, session_id: str, listener: Listener) -> None:
        entry = self.entries.get(session_id)
        if entry is not None and listener in entry.listeners:
            entry.listeners.remove(listener)

    def attach(self, entry: SessionEntry, stream: ServerEventStream) -> None:
        """Log ``stream``'s events as ``entry``'s from now on."""
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

    def _persist(self, session_id: str, data: EventDict) -> None:
        if self.store is None or data.get("type") in NOT_PERSISTED:
            return
        try:
            self.store.append_events(session_id, [data])
        except Exception as error:  # the live listeners still get the event
            self.log.warning("kernelagent: cannot save the event log of %s: %s", session_id, error)

    def _load(self, session_id: str) -> list[EventDict]:
        if self.store is None:
            return []
        events = self.store.events(session_id)
        legacy = self.store.home / "server-events" / f"{session_id}.jsonl"
        if not events and re.fullmatch(r"[\w-]+", session_id) and legacy.is_file():
            events = _read_legacy_log(legacy)  # written by kernelagent before the store had them
            self.store.append_events(session_id, events)
        return events


def _read_legacy_log(path: Path) -> list[EventDict]:
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


def unknown_session(session_id: str) -> NotFoundError:
    return NotFoundError(
        f"no session {session_id!r}",
        hint="GET kernelagent/api/sessions lists the sessions this server knows",
    )
