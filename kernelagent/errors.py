"""The base of kernelagent's own errors: a message that says what happened and a hint
that says what to do next. The CLI prints both; the server sends both as
``{"error": message, "hint": hint}`` with the HTTP status its handlers choose."""

from __future__ import annotations


class KernelAgentError(Exception):
    """What went wrong (``message``) and what to do about it (``hint``, may be empty)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidRequestError(KernelAgentError, ValueError):
    """The request cannot be carried out as asked (a bad value, a path outside the root)."""


class NotFoundError(KernelAgentError, LookupError):
    """What the request names does not exist."""


class ConflictError(KernelAgentError, RuntimeError):
    """The request does not fit the current state (a session that is running, no pending action)."""


class UnavailableError(KernelAgentError, RuntimeError):
    """A service the request needs is down or shutting down; trying later may work."""


def describe(error: BaseException) -> tuple[str, str]:
    """The message and the hint to show for any error."""
    if isinstance(error, KernelAgentError):
        return error.message, error.hint
    return str(error), ""
