"""What can go wrong with local models; every message says what to do next."""

from __future__ import annotations

from kernelagent.errors import KernelAgentError


class LocalModelError(KernelAgentError, RuntimeError):
    """Base class: every message says what to do next."""


class PullError(LocalModelError):
    """A part could not be downloaded or read."""


class ChecksumMismatchError(LocalModelError):
    """The assembled file is not the pinned one; it has been deleted."""


class NotGGUFError(LocalModelError):
    """The file does not start with the GGUF magic bytes."""
