"""``kernelagent sessions | show | resume | approve | reject``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from kernelagent.cli.output import EXIT_CODES, EXIT_FAILED, console, fail, fail_with
from kernelagent.errors import KernelAgentError
from kernelagent.localmodel.store import LocalModelError
from kernelagent.session.store import (
    SessionNotFoundError,
    SessionRecord,
    SessionStateError,
    SessionStore,
)

if TYPE_CHECKING:
    from kernelagent.api import SessionResult

commands = typer.Typer()

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "awaiting_approval": "bold yellow",
    "paused": "yellow",
    "interrupted": "magenta",
    "failed": "red",
    "starting": "dim",
}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _store() -> SessionStore:
    """The session store, after stopping the sandboxes of sessions that wait too long."""
    store = SessionStore()
    if store.idle_sandboxes():  # only then is the sandbox stack needed
        from kernelagent.session.durable import stop_idle_sandboxes

        with contextlib.suppress(KernelAgentError, OSError):  # no Docker engine: nothing to stop
            asyncio.run(stop_idle_sandboxes(store))
    return store


@commands.command()
def sessions(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List sessions: id, status, task, age, steps, usage."""
    records = _store().list()
    if json_output:
        print(
            json.dumps(
                [r.model_dump(mode="json", exclude={"config", "sandbox_state"}) for r in records]
            )
        )
        return
    now = time.time()
    rows = [
        [
            record.id,
            record.status,
            " ".join(record.task.split()),
            _age(now - record.created_at),
            str(record.steps),
            str(record.cells),
            str(record.input_tokens + record.output_tokens),
        ]
        for record in records
    ]
    headers = ["id", "status", "task", "age", "steps", "cells", "tokens"]
    if not sys.stdout.isatty():  # for scripts: full values in plain columns, as `docker ps` prints
        print(plain_columns([name.upper() for name in headers], rows))
        return
    table = Table(*headers)
    for row, record in zip(rows, records, strict=False):
        style = STATUS_STYLE.get(record.status, "white")
        task = row[2] if len(row[2]) <= 50 else row[2][:47] + "…"
        table.add_row(row[0], f"[{style}]{row[1]}[/]", task, *row[3:])
    console.print(table)


def plain_columns(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns three spaces apart, nothing cut; the last one is not padded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [value.ljust(width) for value, width in zip(row[:-1], widths, strict=False)] + [
            row[-1]
        ]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


@commands.command()
def show(
    session_id: Annotated[str, typer.Argument(help="Session id (a unique prefix will do).")],
) -> None:
    """Show a session: status, paths, usage, and the pending action if any."""
    record = _get(_store(), session_id)
    console.print(
        f"[bold]{record.id}[/] · [{STATUS_STYLE.get(record.status, 'white')}]{record.status}[/]"
        + (f" · {record.reason}" if record.reason else "")
    )
    console.print(f"task: {record.task}")
    console.print(f"notebook: {record.notebook}\nworkspace: {record.workspace}")
    console.print(
        f"steps {record.steps} · cells {record.cells} · tokens in {record.input_tokens} out "
        f"{record.output_tokens}"
    )
    console.print(
        "sandbox: "
        + (
            "running (re-attachable)"
            if record.sandbox_state
            else "stopped (resume restores it by replay)"
        )
    )
    sandbox = record.config.get("sandbox") or {}
    if sandbox.get("network_allow"):
        console.print(
            f"egress allowed to {', '.join(sandbox['network_allow'])}; audit log: "
            f"{sandbox.get('egress_log') or '-'}"
        )
    if record.pending:
        console.print(f"[bold yellow]waiting for approval[/] ({record.pending.reason}):")
        language = "bash" if record.pending.kind == "shell" else "python"
        console.print(
            Syntax(record.pending.code.removeprefix("%%bash\n"), language, theme="ansi_dark")
        )
        console.print(f"sha256 {record.pending.code_sha256}")


@commands.command()
def resume(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    instruction: Annotated[
        str | None, typer.Argument(help="A next instruction (optional).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Resume a session: re-attach to its sandbox or restore it, and carry on."""
    record = _get(_store(), session_id)
    if _driven_by_mcp(record):
        if instruction is None:
            raise fail(
                f"session {record.id} was driven by an MCP client: re-attach a client with "
                f"`kernelagent mcp --session {record.id}`, or give kernelagent's agent an "
                f'instruction: kernelagent resume {record.id} "next step"'
            )
        _finish(_resume(record.id, instruction=instruction, driven_by="agent"), json_output)
    _finish(_resume(session_id, instruction=instruction), json_output)


@commands.command()
def approve(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    edit: Annotated[
        Path | None, typer.Option(help="Run this file's code instead (the edit is recorded).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve the pending action (exactly the code shown by `show`) and continue the session."""
    store = _store()
    record = _get(store, session_id)
    edited = None
    if edit is not None:
        if not edit.is_file():
            raise fail(f"--edit file not found: {edit}", 2)
        edited = edit.read_text()
        if record.pending and record.pending.kind == "shell" and not edited.startswith("%%bash"):
            edited = "%%bash\n" + edited
    from kernelagent.session.durable import decide

    try:
        decision = decide(record, "approved", edited_code=edited)
    except SessionStateError as error:
        raise fail(str(error)) from None
    if _driven_by_mcp(record):
        _hand_to_mcp_server(record, decision)
    _finish(_resume(record.id, decision=decision), json_output)


@commands.command()
def reject(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    reason: Annotated[str, typer.Option(help="Why; the model reads it.")] = "",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject the pending action; the model is told (with your reason) and goes on."""
    store = _store()
    record = _get(store, session_id)
    from kernelagent.session.durable import decide

    try:
        decision = decide(record, "rejected", reason=reason)
    except SessionStateError as error:
        raise fail(str(error)) from None
    if _driven_by_mcp(record):
        _hand_to_mcp_server(record, decision)
    _finish(_resume(record.id, decision=decision), json_output)


def _driven_by_mcp(record: SessionRecord) -> bool:
    return record.config.get("driven_by") == "mcp"


def _hand_to_mcp_server(record: SessionRecord, decision) -> None:
    """An MCP client chooses this session's actions: its next call of the code runs it."""
    from kernelagent.mcp_server.approvals import hand_over

    hand_over(record.directory, decision)
    done = "rejected" if decision.decision == "rejected" else "approved"
    console.print(
        f"{done}: the MCP client's next call with this code gets it "
        f"(re-attach with kernelagent mcp --session {record.id} if its server has stopped)"
    )
    raise typer.Exit(0)


def _get(store: SessionStore, session_id: str) -> SessionRecord:
    try:
        return store.get(session_id)
    except SessionNotFoundError as error:
        raise fail(str(error)) from None


def _resume(session_id: str, **options) -> SessionResult:
    from kernelagent.api import aresume
    from kernelagent.cli.render import EventRenderer

    try:
        return asyncio.run(aresume(session_id, on_event=EventRenderer(console), **options))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the notebook was saved")
        raise typer.Exit(EXIT_CODES["interrupted"]) from None
    except LocalModelError as error:
        hint = "the session used a local model; check `kernelagent model list`"
        raise fail_with(error, hint=hint) from None
    except KernelAgentError as error:  # the session's state, the model, Docker, the notebook
        raise fail_with(error) from None


def _finish(result: SessionResult, json_output: bool) -> None:
    if json_output:
        print(json.dumps(result.summary()), file=sys.stdout)
    if result.status == "awaiting_approval":
        console.print(
            f"[bold yellow]waiting for approval[/]: kernelagent show {result.session_id}, "
            f"then approve {result.session_id} or reject {result.session_id}"
        )
    console.print(f"[dim]notebook: {result.notebook_path}[/]")
    raise typer.Exit(EXIT_CODES.get(result.status, EXIT_FAILED))
