"""The host side of a sandbox's audited egress: an HTTP forward proxy on a unix socket.

The sandbox container has no network interface. When its settings allow some
destinations (``--allow-net``), :class:`DockerProvisioner` starts one ``EgressProxy``
per kernel: it listens on a unix socket in the kernel's runtime directory, which is
mounted read-only into the container, where a small forwarder
(``egress_forwarder.py``) relays ``127.0.0.1:3128`` to it. ``HTTP(S)_PROXY`` point there.

For every request (HTTP ``CONNECT`` tunnels, as pip and any HTTPS client send, and
plain-HTTP requests in absolute form) the proxy decides with the sandbox's
:class:`~kernelagent.sandbox.egress_rules.Allowlist`, resolving names **on the host** and
connecting to the address it checked. Refusals get a ``403`` whose reason phrase and
body say what was refused and how to allow it, so the model can read it. Every request,
allowed or refused, becomes an :class:`EgressRecord`: appended to a JSON-lines log
(``log_path``) and handed to listeners (the session writes them into the notebook).

The proxy runs in the host process that started the kernel. If it stops or crashes,
nothing listens on the socket and the sandbox has no other way out: egress fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from kernelagent.sandbox.egress_rules import Allowlist, EgressRule, parse_address, parse_rule

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
MAX_CONNECTIONS = 64
CLIENT_LINGER = 10.0
PROXY_ERROR = (
    "kernelagent egress proxy: the request was refused because the proxy failed while "
    "deciding it (see the host's log); nothing was sent"
)
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
}


@dataclass
class EgressRecord:
    """One request through the proxy, as the audit log and the notebook keep it."""

    time: float
    method: str
    host: str
    port: int
    decision: Literal["allowed", "refused"]
    reason: str = ""
    """Why it was refused (the text the sandbox received), or why an allowed one failed."""
    address: str | None = None
    rule: str | None = None
    path: str | None = None
    """For plain HTTP: the path asked for, without the query string."""
    status: int | None = None
    """The HTTP status the sandbox received for a plain-HTTP request or a refusal."""
    bytes_up: int = 0
    bytes_down: int = 0
    duration: float = 0.0
    headers_added: list[str] | None = None
    """Names (never values) of secret headers the proxy added."""

    def as_dict(self) -> dict[str, object]:
        return {key: value for key, value in asdict(self).items() if value not in (None, "")}


EgressListener = Callable[[EgressRecord], None]


class HeaderSet:
    """Secret headers the proxy adds to plain-HTTP requests for one destination rule."""

    def __init__(self, rule: str, headers: dict[str, str]) -> None:
        self.rule: EgressRule = parse_rule(rule)
        self.headers = dict(headers)

    def applies_to(self, host: str, port: int) -> bool:
        if not self.rule.allows_port(port):
            return False
        address = parse_address(host)
        if address is not None:
            return self.rule.covers_address(address)
        return self.rule.matches_name(host.lower().rstrip("."))


class EgressProxy:
    """An asyncio HTTP forward proxy for one sandbox; see the module docstring.

    Created and started by ``DockerProvisioner`` (``launch_kernel``, or when another
    process re-attaches); closed by its ``cleanup``. Not thread-safe: one event loop.
    """

    def __init__(
        self,
        allowlist: Allowlist,
        socket_path: Path,
        *,
        log_path: Path | None = None,
        headers: dict[str, dict[str, str]] | None = None,
        socket_owner: tuple[int, int] | None = None,
        socket_mode: int = 0o600,
        kernel_id: str = "",
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.allowlist = allowlist
        self.socket_path = socket_path
        self.log_path = log_path
        self.header_sets = [HeaderSet(rule, values) for rule, values in (headers or {}).items()]
        self.socket_owner = socket_owner
        self.socket_mode = socket_mode
        self.kernel_id = kernel_id
        self.max_connections = max_connections
        self.records: deque[EgressRecord] = deque(maxlen=1000)
        self._listeners: list[EgressListener] = []
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        """Listen on ``socket_path`` (replacing a stale socket left by a dead process)."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a socket of a process that is gone; never followed
        self._server = await asyncio.start_unix_server(
            self._handle, path=str(self.socket_path), limit=MAX_HEAD_BYTES
        )
        if self.socket_owner is not None:
            os.chown(self.socket_path, *self.socket_owner)
        os.chmod(self.socket_path, self.socket_mode)

    async def aclose(self) -> None:
        """Stop listening and cut every open connection (their records are written)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def add_listener(self, listener: EgressListener) -> None:
        """Called with every record, on the proxy's loop (the session's, in the agent)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EgressListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- one connection ------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        record = EgressRecord(time=time.time(), method="?", host="?", port=0, decision="refused")
        started = time.monotonic()
        try:
            await self._serve(reader, writer, record)
        except asyncio.CancelledError:
            record.reason = record.reason or "the proxy stopped"
        except Exception as error:  # fail closed: nothing is relayed after an error here
            log.exception(
                "egress proxy: request %s %s:%s failed", record.method, record.host, record.port
            )
            record.reason = record.reason or f"proxy error: {error.__class__.__name__}"
            if record.decision == "refused" and record.status is None:  # nothing answered yet
                record.status = 502
                with contextlib.suppress(Exception):
                    await _answer(writer, 502, "Egress proxy error", PROXY_ERROR)
        finally:
            self._handlers.discard(task)
            writer.close()
            record.duration = round(time.monotonic() - started, 3)
            if record.method != "?":
                self._publish(record)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: EgressRecord
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            return  # not a request (or a client that went away): nothing to record
        request = parse_head(head)
        if request is None:
            await _answer(
                writer, 400, "Bad Request", "kernelagent egress proxy: not an HTTP request"
            )
            return
        method, target, headers = request
        record.method = method
        destination = destination_of(method, target, headers)
        if isinstance(destination, str):
            record.host, record.reason, record.status = target[:200], destination, 400
            await _answer(writer, 400, "Bad Request", f"kernelagent egress proxy: {destination}")
            return
        host, port, path = destination
        record.host, record.port = host, port
        record.path = path.split("?", 1)[0] if path else None
        if len(self._handlers) > self.max_connections:
            record.reason, record.status = f"more than {self.max_connections} open connections", 503
            await _answer(
                writer, 503, "Too Many Connections", f"kernelagent egress proxy: {record.reason}"
            )
            return
        decision = await self.allowlist.decide(host, port, _resolve)
        if not decision.allowed:
            record.reason, record.status = decision.reason, 403
            phrase = (
                f"Forbidden by the kernelagent egress allowlist: {decision.reason.split('. ')[0]}"
            )
            await _answer(writer, 403, phrase, decision.reason)
            return
        record.decision, record.address, record.rule = "allowed", decision.address, decision.rule
        assert decision.address is not None
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(decision.address, port), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as error:
            record.reason, record.status = f"cannot connect: {error or 'timed out'}", 502
            await _answer(
                writer,
                502,
                "Bad Gateway",
                f"kernelagent egress proxy: {host}:{port}: {record.reason}",
            )
            return
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                outgoing, added = self._rewrite(method, path or "/", head, headers, host, port)
                record.headers_added = added or None
                upstream_writer.write(outgoing)
                record.bytes_up += len(outgoing)
            await self._relay(
                reader, writer, upstream_reader, upstream_writer, record, method != "CONNECT"
            )
        finally:
            upstream_writer.close()

    def _rewrite(
        self,
        method: str,
        path: str,
        head: bytes,
        headers: list[tuple[str, str]],
        host: str,
        port: int,
    ) -> tuple[bytes, list[str]]:
        """The request for the origin server: origin-form, no hop-by-hop headers, one
        request per connection, the destination's secret headers, and ``Host`` taken from
        the request line (RFC 9112 3.2.2: a proxy ignores the client's), so a request for an
        allowed host cannot name another site served from the same address."""
        version = head.split(b"\r\n", 1)[0].rsplit(b" ", 1)[-1].decode("latin-1")
        listed = {
            token.strip().lower()
            for name, value in headers
            if name.lower() == "connection"
            for token in value.split(",")
        }
        secrets: dict[str, str] = {}
        for header_set in self.header_sets:
            if header_set.applies_to(host, port):
                secrets.update(header_set.headers)
        replaced = {name.lower() for name in secrets} | {"host"}
        kept = [
            (name, value)
            for name, value in headers
            if name.lower() not in _HOP_BY_HOP | listed | replaced
        ]
        authority = f"[{host}]" if ":" in host else host
        kept.insert(0, ("Host", authority if port == 80 else f"{authority}:{port}"))
        lines = [f"{method} {path} {version}", *(f"{n}: {v}" for n, v in kept)]
        lines += [f"{name}: {value}" for name, value in secrets.items()]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), list(secrets)

    async def _relay(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
        record: EgressRecord,
        read_status: bool,
    ) -> None:
        """Copy bytes both ways until both sides are done (or one fails), counting them."""

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, up: bool) -> None:
            first = read_status and not up
            while data := await source.read(65536):
                if first:
                    record.status = _status_of(data)
                    first = False
                if up:
                    record.bytes_up += len(data)
                else:
                    record.bytes_down += len(data)
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                with contextlib.suppress(OSError):
                    sink.write_eof()

        upward = asyncio.ensure_future(pipe(client_reader, upstream_writer, True))
        downward = asyncio.ensure_future(pipe(upstream_reader, client_writer, False))
        try:
            done, _ = await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
            if any(task.exception() is not None for task in done):
                return  # a reset on one side ends the exchange
            if downward in done:
                # The destination is done; a client that keeps its side open is cut after a while.
                await asyncio.wait({upward}, timeout=CLIENT_LINGER)
            else:
                with contextlib.suppress(OSError):
                    await downward  # the client half-closed; the answer may still be coming
        finally:
            for task in (upward, downward):
                task.cancel()
            await asyncio.gather(upward, downward, return_exceptions=True)

    def _publish(self, record: EgressRecord) -> None:
        self.records.append(record)
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(descriptor, "a", encoding="utf-8") as file:
                    file.write(json.dumps({"kernel_id": self.kernel_id, **record.as_dict()}) + "\n")
            except OSError as error:
                log.warning("egress proxy: cannot write the audit log %s: %s", self.log_path, error)
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:
                log.exception("egress proxy: a listener failed")


# -- HTTP helpers ------------------------------------------------------------------------


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]] | None:
    """Method, target and headers of a request head, or None if it is not HTTP/1.x."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    return parts[0].upper(), parts[1], headers


def destination_of(
    method: str, target: str, headers: list[tuple[str, str]]
) -> tuple[str, int, str | None] | str:
    """(host, port, origin-form target) a request is for (no target for CONNECT), or a
    message saying why it cannot be served."""
    if method == "CONNECT":
        host, port = _host_port(target, None)
        if host is None or port is None:
            return f"CONNECT needs host:port, not {target[:100]!r}"
        return host, port, None
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.netloc:
        if parts.scheme == "https":
            return "use CONNECT for https (set HTTPS_PROXY, as the sandbox's environment does)"
        return "send requests in absolute form (http://host/path) through HTTP_PROXY"
    if "@" in parts.netloc:
        return "credentials in the URL are not forwarded"
    host, port = _host_port(parts.netloc, 80)
    if host is None or port is None:
        return f"cannot read the destination of {target[:100]!r}"
    return host, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _host_port(text: str, default: int | None) -> tuple[str | None, int | None]:
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        return None, None
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None, None
    return host, int(port_text)


def _status_of(data: bytes) -> int | None:
    first = data.split(b"\r\n", 1)[0].split(b" ")
    if len(first) >= 2 and first[0].startswith(b"HTTP/") and first[1].isdigit():
        return int(first[1])
    return None


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str, body: str) -> None:
    """A complete answer from the proxy itself; ``reason`` is the status line's phrase, which
    is all many clients show for a refused CONNECT, so it names the destination."""
    reason = "".join(ch for ch in reason if " " <= ch <= "~")[:300]
    payload = (body + "\n").encode()
    writer.write(
        (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n"
            "X-Kernelagent-Egress: refused\r\n\r\n"
        ).encode()
        + payload
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _resolve(name: str, port: int) -> list[str]:
    """Addresses of a name, resolved on the host (the sandbox cannot resolve anything)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen
