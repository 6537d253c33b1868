"""The root Typer app. Each command module is light to import: what a command needs
beyond typer and rich it imports when it runs, so ``--help`` and the listing commands
start fast and do not load the notebook, model or server stacks."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from kernelagent.cli import (
    mcp_commands,
    memory_commands,
    model_commands,
    model_service_commands,
    pool_commands,
    replay_commands,
    run_command,
    sandbox_commands,
    session_commands,
)
from kernelagent.cli.output import console, fail

app = typer.Typer(
    name="kernelagent",
    help="An agent whose computer is a Jupyter kernel in a sandbox; every session is a notebook.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def where(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="The session index: sqlite:///PATH or postgresql://USER@HOST/DB "
            "(sets $KERNELAGENT_STORE_URL; default: SQLite in $KERNELAGENT_HOME).",
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run sessions (run, resume, approve, reject, continue) on this Ray cluster, "
            "HOST:PORT of its head (sets $KERNELAGENT_CLUSTER).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Options that apply to every command (give them before the command)."""
    if store:
        os.environ["KERNELAGENT_STORE_URL"] = store
    if cluster:
        os.environ["KERNELAGENT_CLUSTER"] = cluster


model_commands.model_app.add_typer(model_service_commands.commands)
for module in (
    sandbox_commands,
    run_command,
    model_commands,
    replay_commands,
    session_commands,
    pool_commands,
    memory_commands,
    mcp_commands,
):
    app.add_typer(module.commands)

__all__ = ["app", "console", "fail"]
