"""A scripted, OpenAI-compatible HTTP server for tests and demos.

Serves ``POST /v1/responses``, ``POST /v1/chat/completions`` (streaming or not),
``GET /v1/models`` and ``GET /health`` on 127.0.0.1 from a background thread. Every completion
request
consumes the next ``ScriptedTurn``, whichever endpoint it hits.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field
from typing_extensions import Self

from kernelagent.testing import scripted_payloads as payloads
from kernelagent.testing.scripted_turns import Responder, ScriptedTurn, openai_error_body

RESPONSES_PATHS = ("/v1/responses", "/responses")
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODELS_PATHS = ("/v1/models", "/models")
HEALTH_PATHS = ("/health",)


class RecordedRequest(BaseModel):
    method: str
    path: str
    headers: dict[str, str]
    """Header names are lower-cased."""
    body: Any = None
    """The parsed JSON body, or None."""
    turn_index: int | None = None
    """Which scripted turn answered it (None: no turn consumed)."""
    received_at: float = Field(default_factory=time.time)


class ScriptedModelServer:
    """Answers OpenAI API requests from a script; see the module docstring."""

    def __init__(
        self,
        script: Sequence[ScriptedTurn] | Responder,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        model_ids: Sequence[str] = ("scripted-model",),
    ) -> None:
        if callable(script):
            self._responder: Responder | None = script
            self._turns: list[ScriptedTurn] = []
        else:
            self._responder = None
            self._turns = list(script)
        self.host = host
        self.port = port
        self.api_key = api_key
        self.model_ids = list(model_ids)
        self.requests: list[RecordedRequest] = []
        self.turns_served = 0
        self.ids = payloads.IdAllocator()
        self._lock = threading.RLock()
        self._httpd: _TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        handler = type("BoundScriptedHandler", (_ScriptedHandler,), {"scripted": self})
        self._httpd = _TrackingHTTPServer((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scripted-model-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- inspection --------------------------------------------------------------

    @property
    def root_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(
                "ScriptedModelServer is not started; call start() or use it as a context manager"
            )
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def remaining_turns(self) -> int:
        """Scripted turns not yet served (always 0 with a responder)."""
        with self._lock:
            if self._responder is not None:
                return 0
            return len(self._turns) - self.turns_served

    def completion_requests(self) -> list[RecordedRequest]:
        """The recorded requests to the completion endpoints, in order."""
        return [r for r in self.requests if r.path.endswith(("/responses", "/chat/completions"))]

    def add_turns(self, turns: Iterable[ScriptedTurn]) -> None:
        with self._lock:
            self._turns.extend(turns)

    # --- used by the handler -----------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_turn(self, body: dict[str, Any]) -> tuple[int, ScriptedTurn | None]:
        with self._lock:
            if self._responder is not None:
                index = self.turns_served
                turn = self._responder(body)
                if turn is not None:
                    self.turns_served += 1
                return index, turn
            index = self.turns_served
            if index >= len(self._turns):
                return index, None
            self.turns_served += 1
            return index, self._turns[index]


class _TrackingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up mid-reply is expected in tests, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    scripted: ScriptedModelServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- routing -----------------------------------------------------------------

    def do_GET(self) -> None:
        path = self._path()
        self._record(body=None)
        if not self._authorized():
            return
        if path in HEALTH_PATHS:  # as llama-server answers once its model is loaded
            self._send_json(HTTPStatus.OK, {"status": "ok"})
            return
        if path in MODELS_PATHS:
            data = [
                {
                    "id": model_id,
                    "object": "model",
                    "created": payloads.CREATED_AT,
                    "owned_by": "kernelagent",
                }
                for model_id in self.scripted.model_ids
            ]
            self._send_json(HTTPStatus.OK, {"object": "list", "data": data})
            return
        self._send_unknown_path(path)

    def do_POST(self) -> None:
        path = self._path()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            self._record(body=raw.decode("utf-8", "replace"))
            self._send_error(HTTPStatus.BAD_REQUEST, f"Request body is not valid JSON: {exc}")
            return
        record = self._record(body=body)
        if not self._authorized():
            return
        if path not in RESPONSES_PATHS + CHAT_PATHS:
            self._send_unknown_path(path)
            return
        if not isinstance(body, dict):
            self._send_error(HTTPStatus.BAD_REQUEST, "Request body must be a JSON object")
            return

        index, turn = self.scripted._next_turn(body)
        if turn is None:
            self._send_error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"ScriptedModelServer: the script ran out: request #{len(self.scripted.requests)} "
                f"(POST {path}) came after all {index} scripted turns were used",
                code="script_exhausted",
            )
            return
        record.turn_index = index
        if turn.delay:
            time.sleep(turn.delay)
        if turn.is_error:
            assert turn.status_code is not None
            body_out = turn.error_body or openai_error_body(
                f"Scripted error {turn.status_code}", error_type="server_error"
            )
            self._send_json(turn.status_code, body_out, extra_headers=turn.headers)
            return
        if turn.fault == "empty_stream":
            self._reply_empty(path, body, turn)
        elif path in RESPONSES_PATHS:
            self._reply_responses(body, turn, len(raw))
        else:
            self._reply_chat(body, turn, len(raw))

    # --- endpoints ---------------------------------------------------------------

    def _reply_responses(
        self, request: dict[str, Any], turn: ScriptedTurn, request_bytes: int
    ) -> None:
        final = payloads.response_object(
            response_id=self.scripted.ids.next("resp"),
            request=request,
            status="completed",
            output=payloads.responses_output_items(turn, self.scripted.ids),
            usage=payloads.estimate_usage(turn, request_bytes),
        )
        if request.get("stream"):
            events = payloads.responses_stream_events(final)
            self._send_sse(
                (f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events), turn
            )
        else:
            self._send_json(
                HTTPStatus.OK, final, extra_headers=turn.headers, cut=turn.fault == "cut_stream"
            )

    def _reply_empty(self, path: str, request: dict[str, Any], turn: ScriptedTurn) -> None:
        """200 with nothing in it: no content, no tool call, no finish reason."""
        model = str(request.get("model", "scripted-model"))
        if path in RESPONSES_PATHS:
            pending = payloads.response_object(
                response_id=self.scripted.ids.next("resp"),
                request=request,
                status="in_progress",
                output=[],
                usage=None,
            )
            if request.get("stream"):
                event = {"type": "response.created", "sequence_number": 0, "response": pending}
                self._send_sse([f"event: response.created\ndata: {json.dumps(event)}\n\n"], turn)
            else:
                self._send_json(HTTPStatus.OK, pending, extra_headers=turn.headers)
            return
        completion_id = self.scripted.ids.next("chatcmpl", separator="-")
        if request.get("stream"):
            role = payloads.chat_role_chunk(completion_id=completion_id, model=model)
            self._send_sse([f"data: {json.dumps(role)}\n\n", "data: [DONE]\n\n"], turn)
        else:
            self._send_json(
                HTTPStatus.OK,
                payloads.chat_empty_completion(completion_id=completion_id, model=model),
                extra_headers=turn.headers,
            )

    def _reply_chat(self, request: dict[str, Any], turn: ScriptedTurn, request_bytes: int) -> None:
        completion_id = self.scripted.ids.next("chatcmpl", separator="-")
        model = str(request.get("model", "scripted-model"))
        tool_calls = payloads.chat_tool_calls(turn, self.scripted.ids)
        usage = payloads.estimate_usage(turn, request_bytes)
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            chunks = payloads.chat_stream_chunks(
                completion_id=completion_id,
                model=model,
                text=turn.text,
                tool_calls=tool_calls,
                usage=usage,
                include_usage=include_usage,
            )
            lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
            self._send_sse(lines, turn)
        else:
            completion = payloads.chat_completion(
                completion_id=completion_id,
                model=model,
                text=turn.text,
                tool_calls=tool_calls,
                usage=usage,
            )
            self._send_json(
                HTTPStatus.OK,
                completion,
                extra_headers=turn.headers,
                cut=turn.fault == "cut_stream",
            )

    # --- plumbing ----------------------------------------------------------------

    def _path(self) -> str:
        path = self.path.split("?", 1)[0]
        return path.rstrip("/") or "/"

    def _record(self, body: Any) -> RecordedRequest:
        request = RecordedRequest(
            method=self.command,
            path=self._path(),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        self.scripted._record(request)
        return request

    def _authorized(self) -> bool:
        expected = self.scripted.api_key
        if expected is None:
            return True
        given = self.headers.get("Authorization", "")
        if given == f"Bearer {expected}":
            return True
        shown = given.removeprefix("Bearer ")[:8] or "(none)"
        self._send_error(
            HTTPStatus.UNAUTHORIZED,
            f"Incorrect API key provided: {shown}...",
            error_type="invalid_request_error",
            code="invalid_api_key",
        )
        return False

    def _send_unknown_path(self, path: str) -> None:
        self._send_error(
            HTTPStatus.NOT_FOUND,
            f"Invalid URL ({self.command} {path})",
            error_type="invalid_request_error",
            code="unknown_url",
        )

    def _send_error(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "server_error",
        code: str | None = None,
    ) -> None:
        self._send_json(status, openai_error_body(message, error_type=error_type, code=code))

    def _send_json(
        self,
        status: int,
        payload: Any,
        *,
        extra_headers: dict[str, str] | None = None,
        cut: bool = False,
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if cut:  # half the promised body, then the connection closes
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def _send_sse(self, messages: Iterable[str], turn: ScriptedTurn) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in turn.headers.items():
            self.send_header(name, value)
        self.end_headers()
        messages = list(messages)
        if turn.fault == "cut_stream":  # the first half, then the connection closes mid-body
            messages = messages[: max(1, len(messages) // 2)]
        for number, message in enumerate(messages):
            if number and turn.chunk_delay:
                time.sleep(turn.chunk_delay)
            data = message.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        if turn.fault == "cut_stream":
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
