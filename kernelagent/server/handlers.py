"""HTTP and WebSocket handlers, all under ``{base_url}kernelagent/api/``.

Every HTTP method is ``@web.authenticated`` (then ``@authorized`` on the resource
``kernelagent``); the WebSocket is ``@ws_authenticated``. Request and reply bodies are
JSON; errors are ``{"error": ..., "hint": ...}`` (plus ``message``, the same text).

=====================================  =====================================================
``GET  sessions``                      200 ``{"sessions": [session, ...]}`` (newest first)
``POST sessions``                      201 ``{"session"}``; body ``{task, data?, model?,
                                       base_url?, api?, sandbox?, approve?, max_steps?,
                                       allow_net?}``
``GET  sessions/{id}``                 200 ``{"session", "events": [...]}``
``POST notebook-sessions``             201 ``{"session"}``; body ``{task, notebook_path, cells,
                                       variables, active_cell, ...}``: work in that notebook
``POST sessions/{id}/cells/{cell_id}``  202; body ``{outputs, execution_count, status}``: the
                                       panel ran the cell in the notebook
``POST sessions/{id}/messages``        202 ``{"session"}``; body ``{instruction}``
``POST sessions/{id}/approve``         202 ``{"session"}``; body ``{code?}`` (edited code)
``POST sessions/{id}/reject``          202 ``{"session"}``; body ``{reason?}``
``POST sessions/{id}/stop``            202 ``{"session"}``
``POST replay``                        200 ``ReplayReport.as_dict()``; body ``{path}``
``WS   sessions/{id}/events?since=N``  events with seq > N, then live ones
=====================================  =====================================================

A session is ``{id, status, reason, task, created_at, updated_at, steps, cells,
input_tokens, output_tokens, notebook, pending}``; ``pending`` is ``{cell_id, kind, code,
code_sha256, reason}`` or null. While a follow-up or an approval is being resumed the
status shows ``starting`` (reason ``resuming``). 400: bad input (including a
``base_url`` outside ``allowed_base_urls``); 403: something this server does not let
requests choose (``sandbox: "local"``, ``allow_net`` beyond ``request_network_allow``;
see ``request_policy.py``); 404: unknown session;
409: the session is running, or has nothing pending, or cannot do that now; 502: the
model server refused or is unreachable (before the session started; later failures are
events: ``error``, then ``status_changed`` and ``session_finished`` with status failed);
503: Docker or the sandbox is unavailable, or the server is shutting down. A 500 says only
"internal server error"; the detail is in the server log.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kernelagent.errors import NotFoundError
from kernelagent.server.errors import ApiError, as_api_error
from kernelagent.server.event_log import EventDict
from kernelagent.server.manager import SessionManager

try:  # jupyter_server >= 2.13
    from jupyter_server.auth.decorator import ws_authenticated
except ImportError:  # pragma: no cover - older servers: the same check, by hand
    import functools

    def ws_authenticated(method):  # type: ignore[misc]
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            if self.current_user is None:
                raise web.HTTPError(403)
            return method(self, *args, **kwargs)

        return wrapper


AUTH_RESOURCE = "kernelagent"
PREFIX = "kernelagent/api"
SESSION = r"(?P<session_id>[^/]+)"


class KernelAgentHandler(ExtensionHandlerMixin, APIHandler):
    """Base of the HTTP handlers: the manager, JSON bodies, JSON errors."""

    auth_resource = AUTH_RESOURCE

    @property
    def manager(self) -> SessionManager:
        return self.extensionapp.manager  # type: ignore[attr-defined]

    def json_body(self) -> dict[str, Any]:
        try:
            body = self.get_json_body()
        except web.HTTPError:
            raise ApiError(
                400, "the request body is not valid JSON", hint="send a JSON object"
            ) from None
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def reply(self, status: int, payload: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """kernelagent's own errors are answers, not server faults: log only the 5xx ones."""
        reply = as_api_error(value) if value is not None else None
        if reply is not None and reply.status_code < 500:
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado calls this for every error reply. kernelagent's errors (mapped to their
        HTTP status here) and HTTP errors say what to fix; anything else gets a generic
        message, and its detail goes to the server log only (as jupyter_server's
        APIHandler does)."""
        self.set_header("Content-Type", "application/json")
        error, hint = self._reason or "error", ""
        exc_info = kwargs.get("exc_info")
        exception = exc_info[1] if exc_info else None
        reply = as_api_error(exception) if exception is not None else None
        if reply is not None:
            self.set_status(reply.status_code)
            error, hint = reply.error, reply.hint
        elif isinstance(exception, web.HTTPError):
            if exception.log_message and status_code < 500:
                message = exception.log_message
                error = message % exception.args if exception.args else message
            else:
                error = exception.reason or error
        elif exception is not None:
            self.log.error(
                "kernelagent: %s %s failed",
                self.request.method,
                self.request.path,
                exc_info=exc_info,
            )
            error = "internal server error"
            hint = "see the Jupyter server log for the details"
        # "message" too, for clients that read Jupyter's usual error shape.
        self.finish(json.dumps({"error": error, "hint": hint, "message": error}))


class SessionsHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(200, {"sessions": self.manager.list_sessions()})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        session = await self.manager.create(self.json_body())
        self.reply(201, {"session": session})


class SessionHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def get(self, session_id: str) -> None:
        session = self.manager.session_json(session_id)
        self.reply(200, {"session": session, "events": self.manager.events(session["id"])})


class NotebookSessionsHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        session = await self.manager.notebooks.create(self.json_body())
        self.reply(201, {"session": session})


class CellResultHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self, session_id: str, cell_id: str) -> None:
        self.manager.notebooks.deliver(session_id, cell_id, self.json_body())
        self.reply(202, {"cell_id": cell_id})


class MessagesHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self, session_id: str) -> None:
        session = await self.manager.follow_up(session_id, self.json_body())
        self.reply(202, {"session": session})


class ApproveHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self, session_id: str) -> None:
        session = await self.manager.decide(session_id, "approved", self.json_body())
        self.reply(202, {"session": session})


class RejectHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self, session_id: str) -> None:
        session = await self.manager.decide(session_id, "rejected", self.json_body())
        self.reply(202, {"session": session})


class StopHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self, session_id: str) -> None:
        self.reply(202, {"session": self.manager.stop(session_id)})


class ReplayHandler(KernelAgentHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.reply(200, await self.manager.replay(self.json_body()))


class SessionEventsSocket(ExtensionHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """``WS sessions/{id}/events?since=N``: logged events after N, then live ones.

    Each event is one JSON text message (``event.model_dump(mode="json")``); ``seq``
    only grows, so a client that reconnects passes the last ``seq`` it saw.
    """

    auth_resource = AUTH_RESOURCE
    session_id = ""
    last_sent = 0

    @property
    def manager(self) -> SessionManager:
        return self.extensionapp.manager  # type: ignore[attr-defined]

    @ws_authenticated
    async def get(self, session_id: str) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        try:
            self.last_sent = max(0, int(self.get_argument("since", "0")))
        except ValueError:
            raise web.HTTPError(
                400, "since must be an integer (the last seq the client saw)"
            ) from None
        try:
            record = self.manager.get_record(session_id)  # 404 before the upgrade
        except NotFoundError as error:
            raise ApiError(404, error.message, error.hint) from None
        self.session_id = record.id
        await super().get(session_id)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        try:
            _, backlog = self.manager.subscribe(self.session_id, self.send_event, self.last_sent)
        except NotFoundError as error:  # removed between the check and the upgrade
            self.close(code=4004, reason=error.message[:120])
            return
        for data in backlog:
            self.send_event(data)

    def send_event(self, data: EventDict) -> None:
        if data["seq"] <= self.last_sent:
            return  # already sent (the backlog and a live event can overlap)
        self.last_sent = data["seq"]
        try:
            self.write_message(json.dumps(data))
        except WebSocketClosedError:
            self.manager.unsubscribe(self.session_id, self.send_event)

    def on_message(self, message: str | bytes) -> None:
        """Clients do not send anything; messages are ignored."""

    def on_close(self) -> None:
        self.manager.unsubscribe(self.session_id, self.send_event)


default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"/{PREFIX}/sessions", SessionsHandler),
    (rf"/{PREFIX}/sessions/{SESSION}", SessionHandler),
    (rf"/{PREFIX}/sessions/{SESSION}/messages", MessagesHandler),
    (rf"/{PREFIX}/sessions/{SESSION}/cells/(?P<cell_id>[^/]+)", CellResultHandler),
    (rf"/{PREFIX}/notebook-sessions", NotebookSessionsHandler),
    (rf"/{PREFIX}/sessions/{SESSION}/approve", ApproveHandler),
    (rf"/{PREFIX}/sessions/{SESSION}/reject", RejectHandler),
    (rf"/{PREFIX}/sessions/{SESSION}/stop", StopHandler),
    (rf"/{PREFIX}/sessions/{SESSION}/events", SessionEventsSocket),
    (rf"/{PREFIX}/replay", ReplayHandler),
]
