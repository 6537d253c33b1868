"""The bearer token that guards ``kernelagent mcp --http``: generated unless given, kept in
a file only its owner can read, compared in constant time on every HTTP request."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "KERNELAGENT_MCP_TOKEN"


def default_token_file() -> Path:
    from kernelagent.session.store import default_home

    return default_home() / "mcp" / "token"


def prepare_token(token: str | None, token_file: Path | None) -> tuple[str, Path]:
    """The token to require (given, ``$KERNELAGENT_MCP_TOKEN``, or a new random one),
    written to ``token_file`` with mode 0600 so a client on this machine can read it."""
    token = token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    path = token_file or default_token_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return token, path


class BearerTokenAuth:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` gets 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "missing or wrong bearer token",
                "hint": "send 'Authorization: Bearer <token>'; kernelagent mcp --http printed "
                "the token and the file it is in",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="kernelagent"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
