"""The root Typer app; command groups register themselves by import."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="kernelagent",
    help="An agent whose computer is a Jupyter kernel in a sandbox; every session is a notebook.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear error line and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


from kernelagent.cli import sandbox_commands  # noqa: E402,F401  (registers commands)
from kernelagent.cli import run_command  # noqa: E402,F401
from kernelagent.cli import model_commands  # noqa: E402,F401
from kernelagent.cli import model_service_commands  # noqa: E402,F401
from kernelagent.cli import replay_commands  # noqa: E402,F401
from kernelagent.cli import session_commands  # noqa: E402,F401
from kernelagent.cli import pool_commands  # noqa: E402,F401
