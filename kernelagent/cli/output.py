"""How the CLI talks to a person: one console on stderr, and errors as one clear line
with the hint on the next (the same message and hint the server sends as JSON)."""

from __future__ import annotations

import typer
from rich.console import Console

from kernelagent.errors import KernelAgentError

console = Console(stderr=True)

#: Exit codes, documented in the README.
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_PAUSED = 3
EXIT_AWAITING_APPROVAL = 4
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    "completed": EXIT_COMPLETED,
    "failed": EXIT_FAILED,
    "paused": EXIT_PAUSED,
    "awaiting_approval": EXIT_AWAITING_APPROVAL,
    "interrupted": EXIT_INTERRUPTED,
}


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear error line and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def fail_with(error: KernelAgentError, code: int = 1, hint: str = "") -> typer.Exit:
    """Print a kernelagent error (its message, then its hint or ``hint``); return the Exit."""
    hint = hint or error.hint
    return fail(error.message + (f"\n  hint: {hint}" if hint else ""), code)
