"""The bodies of the REST API's requests, as pydantic models.

The server parses every body with these; their JSON schema is where the panel's
TypeScript request types come from (``scripts/panel_types.py``). A value that does not
fit becomes an :class:`~kernelagent.errors.InvalidRequestError` whose message names the
field and what it must be.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ValidationError, WithJsonSchema, field_validator

from kernelagent.errors import InvalidRequestError
from kernelagent.literals import (
    API_KINDS,
    APPROVAL_MODES,
    SANDBOX_KINDS,
    ApiKind,
    ApprovalMode,
    SandboxKind,
)

MAX_ATTEMPTS = 8

Request = TypeVar("Request", bound=BaseModel)


class _RefusedValue(ValueError):
    """Raised by a validator; carries the message and hint the client gets."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def parse_request(model: type[Request], body: dict[str, Any]) -> Request:
    """``body`` as ``model``, or the first problem with it as an InvalidRequestError."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        refused = problem.get("ctx", {}).get("error")
        if isinstance(refused, _RefusedValue):
            raise InvalidRequestError(refused.message, refused.hint) from None
        if problem["type"] == "missing":
            raise InvalidRequestError(f"{field} is required (a non-empty string)") from None
        raise InvalidRequestError(f"{field}: {problem['msg']}") from None


def _required_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _RefusedValue(f"{name} is required (a non-empty string)")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _RefusedValue(f"{name} must be a string")
    return value


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str | None:
    """None for a value not given (the server's default applies)."""
    if not value:
        return None
    if value not in allowed:
        raise _RefusedValue(f"unknown {name} {value!r}", hint=f"use one of: {', '.join(allowed)}")
    return str(value)


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CreateSessionRequest(BaseModel):
    """``POST sessions``: start a session on a task."""

    task: str
    data: list[str] = []
    """Data files, relative to the server's root directory, copied into the workspace."""
    api: ApiKind | None = None
    sandbox: SandboxKind | None = None
    allow_net: Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "string"}})] = None
    """Extra HOST[:PORT] rules for the sandbox's egress (the server's policy decides)."""
    approve: ApprovalMode | None = None
    max_steps: int | None = None
    attempts: int | None = None
    model: str | None = None
    base_url: str | None = None
    agent_memory: bool | None = None
    """False: this session neither recalls nor writes memories (default: on)."""

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> str:
        return _required_text(value, "task")

    @field_validator("data", mode="before")
    @classmethod
    def _data(cls, value: Any) -> list[str]:
        value = value or []
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise _RefusedValue(
                "data must be a list of paths relative to the server's root directory"
            )
        return value

    @field_validator("api", mode="before")
    @classmethod
    def _api(cls, value: Any) -> str | None:
        return _choice(value, "api", API_KINDS)

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox(cls, value: Any) -> str | None:
        return _choice(value, "sandbox", SANDBOX_KINDS)

    @field_validator("approve", mode="before")
    @classmethod
    def _approve(cls, value: Any) -> str | None:
        return _choice(value, "approve", APPROVAL_MODES)

    @field_validator("max_steps", mode="before")
    @classmethod
    def _max_steps(cls, value: Any) -> int | None:
        if value is not None and (not _whole_number(value) or value < 1):
            raise _RefusedValue(f"max_steps must be a positive integer, not {value!r}")
        return value

    @field_validator("attempts", mode="before")
    @classmethod
    def _attempts(cls, value: Any) -> int | None:
        if value is not None and (not _whole_number(value) or not 1 <= value <= MAX_ATTEMPTS):
            raise _RefusedValue(
                f"attempts must be an integer from 1 to {MAX_ATTEMPTS}, not {value!r}"
            )
        return value

    @field_validator("model", "base_url", mode="before")
    @classmethod
    def _text(cls, value: Any, info: Any) -> str | None:
        return _optional_text(value, info.field_name)


class FollowUpRequest(BaseModel):
    """``POST sessions/{id}/messages``: another instruction for a session that stopped."""

    instruction: str

    @field_validator("instruction", mode="before")
    @classmethod
    def _instruction(cls, value: Any) -> str:
        return _required_text(value, "instruction")


class ApproveRequest(BaseModel):
    """``POST sessions/{id}/approve``: run the pending action (or ``code`` instead of it)."""

    code: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> str | None:
        if value is not None and not isinstance(value, str):
            raise _RefusedValue("code must be a string (the edited code to run instead)")
        return value


class RejectRequest(BaseModel):
    """``POST sessions/{id}/reject``: do not run the pending action."""

    reason: str = ""

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> str:
        value = value or ""
        if not isinstance(value, str):
            raise _RefusedValue("reason must be a string")
        return value


class ReplayRequest(BaseModel):
    """``POST replay``: re-execute a notebook under the server's root and compare."""

    path: str
    until: int | str | None = None
    """Stop after this cell: a 1-based code-cell number, or a cell id."""
    sandbox: SandboxKind | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> str:
        return _required_text(value, "path")

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: Any) -> int | str | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
            raise _RefusedValue("until must be a code-cell number or a cell id")
        return value

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox(cls, value: Any) -> str | None:
        return _choice(value, "sandbox", SANDBOX_KINDS)


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    CreateSessionRequest,
    FollowUpRequest,
    ApproveRequest,
    RejectRequest,
    ReplayRequest,
)
