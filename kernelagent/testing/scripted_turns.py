"""What a scripted model says: one ``ScriptedTurn`` per model request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from kernelagent.events import Usage


class ScriptedToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    """A dict is sent as JSON; a string is sent verbatim (so it can be malformed)."""

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


class ScriptedTurn(BaseModel):
    text: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    status_code: int | None = None
    """Reply with this HTTP error status instead of a completion."""
    error_body: dict[str, Any] | None = None
    """The JSON body of the error reply; an OpenAI-style body is made up if omitted."""
    usage: Usage | None = None
    """Usage to report; estimated from the request and reply sizes if omitted."""
    delay: float = 0.0
    """Seconds to wait before replying."""
    chunk_delay: float = 0.0
    """Seconds to wait between streamed events (to test interrupting a stream)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra response headers, e.g. ``retry-after-ms`` for fast SDK retries."""
    fault: Literal["empty_stream", "cut_stream"] | None = None
    """A transport fault instead of a normal reply. ``empty_stream``: 200, then no content,
    no tool call and no finish reason (streamed: a role chunk and ``[DONE]``, as
    llama-cpp-python's server answers a second client while it serves a first; Responses:
    ``response.created`` and the end of the stream). ``cut_stream``: the first half of the
    reply's events, then the connection is closed mid-stream (not streamed: half the body)."""

    @property
    def is_error(self) -> bool:
        return self.status_code is not None and self.status_code >= 400

    @classmethod
    def python(cls, code: str, text: str = "", **fields: Any) -> ScriptedTurn:
        return cls(
            text=text,
            tool_calls=[ScriptedToolCall(name="python", arguments={"code": code})],
            **fields,
        )

    @classmethod
    def shell(cls, command: str, text: str = "", **fields: Any) -> ScriptedTurn:
        return cls(
            text=text,
            tool_calls=[ScriptedToolCall(name="shell", arguments={"command": command})],
            **fields,
        )

    @classmethod
    def final(cls, answer: str, text: str = "", **fields: Any) -> ScriptedTurn:
        return cls(
            text=text,
            tool_calls=[ScriptedToolCall(name="final_answer", arguments={"answer": answer})],
            **fields,
        )

    @classmethod
    def empty_stream(cls, **fields: Any) -> ScriptedTurn:
        """A reply with nothing in it: no content, no tool call, no finish reason."""
        return cls(fault="empty_stream", **fields)

    @classmethod
    def cut_stream(
        cls, text: str = "This reply is cut off in the middle", **fields: Any
    ) -> ScriptedTurn:
        """A reply whose connection is closed half-way through."""
        return cls(text=text, fault="cut_stream", **fields)

    @classmethod
    def say(cls, text: str, **fields: Any) -> ScriptedTurn:
        return cls(text=text, **fields)

    @classmethod
    def call(
        cls, name: str, arguments: dict[str, Any] | str, text: str = "", **fields: Any
    ) -> ScriptedTurn:
        return cls(
            text=text, tool_calls=[ScriptedToolCall(name=name, arguments=arguments)], **fields
        )

    @classmethod
    def error(
        cls,
        status_code: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        code: str | None = None,
        **fields: Any,
    ) -> ScriptedTurn:
        body = openai_error_body(
            message or f"Scripted error {status_code}",
            error_type=error_type or default_error_type(status_code),
            code=code,
        )
        return cls(status_code=status_code, error_body=body, **fields)


Responder = Callable[[dict[str, Any]], "ScriptedTurn | None"]
"""Builds the reply to a request body; ``None`` means the script has run out."""


def openai_error_body(message: str, *, error_type: str, code: str | None = None) -> dict[str, Any]:
    """An error body in OpenAI's format."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def default_error_type(status_code: int) -> str:
    if status_code == 401:
        return "invalid_request_error"
    if status_code == 429:
        return "requests"
    if status_code >= 500:
        return "server_error"
    return "invalid_request_error"
