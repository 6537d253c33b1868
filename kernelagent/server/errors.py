"""Errors as the HTTP API shows them: the status for each domain error, and its message
and hint (the same pair the CLI prints)."""

from __future__ import annotations

from tornado import web

from kernelagent.agent.model import ModelAuthError, ModelError, ModelNotFoundError
from kernelagent.database.backend import StoreUnavailableError
from kernelagent.errors import (
    ConflictError,
    InvalidRequestError,
    KernelAgentError,
    NotFoundError,
    UnavailableError,
)
from kernelagent.localmodel.store import LocalModelError
from kernelagent.sandbox.docker_provisioner import DockerUnavailableError
from kernelagent.sandbox.sandbox import SandboxError
from kernelagent.server.request_policy import PolicyError
from kernelagent.session.store import SessionNotFoundError, SessionStateError

HTTP_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidRequestError, 400),
    (FileNotFoundError, 400),
    (ModelAuthError, 400),
    (ModelNotFoundError, 400),
    (NotFoundError, 404),
    (SessionNotFoundError, 404),
    (ConflictError, 409),
    (SessionStateError, 409),
    (ModelError, 502),
    (UnavailableError, 503),
    (StoreUnavailableError, 503),
    (DockerUnavailableError, 503),
    (SandboxError, 503),
    (LocalModelError, 503),
)
"""First match wins; any other KernelAgentError is a 500."""


class ApiError(web.HTTPError):
    """An HTTP error whose JSON body is ``{"error": ..., "hint": ...}``."""

    def __init__(self, status: int, error: str, hint: str = "") -> None:
        # tornado formats log_message with %; the message is ours, not a format string.
        super().__init__(status, log_message=error.replace("%", "%%"))
        self.error = error
        self.hint = hint


def http_status(error: BaseException) -> int:
    if isinstance(error, PolicyError):
        return error.status
    return next((status for kind, status in HTTP_STATUS if isinstance(error, kind)), 500)


def describe_error(error: BaseException) -> tuple[str, str]:
    """A message and a hint for an exception, for an ``error`` event or an HTTP reply."""
    if isinstance(error, DockerUnavailableError):
        hint = "start Docker (or create the session with sandbox 'local', which is not isolated)"
        return str(error), hint
    if isinstance(error, SandboxError):
        return str(
            error
        ), "check that Docker runs and the sandbox image exists (kernelagent image build)"
    if isinstance(error, KernelAgentError):
        return error.message, error.hint
    if isinstance(error, FileNotFoundError):
        return str(error), ""
    return f"{error.__class__.__name__}: {error}", "see the Jupyter server log"


def as_api_error(error: BaseException) -> ApiError | None:
    """The HTTP reply for one of kernelagent's errors; None for anything else."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, KernelAgentError):
        return ApiError(http_status(error), *describe_error(error))
    return None
