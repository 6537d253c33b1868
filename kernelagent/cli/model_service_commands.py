"""``kernelagent model serve|ps|stop|install-server``: the machine-wide model service."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kernelagent.cli.model_commands import pull_with_progress
from kernelagent.cli.output import console, fail
from kernelagent.localmodel import LocalModelHandle, start_local_model
from kernelagent.localmodel.build import BuildProgress, install_llama_server, installed_version
from kernelagent.localmodel.catalog import DEFAULT_MODEL, UnknownModelError
from kernelagent.localmodel.service import RunningService, running_services, stop
from kernelagent.localmodel.service_files import read_state
from kernelagent.localmodel.store import LocalModelError, ModelStore

commands = typer.Typer()
"""``kernelagent model serve | ps | stop | install-server``, added to the ``model`` group."""


@commands.command("serve")
def serve(
    model: Annotated[
        str, typer.Argument(help="Catalog name or path to a .gguf file.")
    ] = DEFAULT_MODEL,
    port: Annotated[
        int | None,
        typer.Option(help="Port on 127.0.0.1 if this starts the server (default: a free one)."),
    ] = None,
    ctx: Annotated[
        int | None,
        typer.Option(
            "--ctx",
            help="Context per slot in tokens (default: $KERNELAGENT_MODEL_CTX or the model's).",
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(help="Requests decoded at once (default: $KERNELAGENT_MODEL_SLOTS or 4)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="llama-server | llama-cpp-python (default: llama-server if installed)."),
    ] = None,
) -> None:
    """Serve a model on 127.0.0.1 with an OpenAI-compatible API until Ctrl-C.

    This is the same shared server every session on the machine uses: if it already
    runs, this only holds it up; after Ctrl-C it stays up until its idle timeout."""
    store = ModelStore()
    try:
        resolved = store.resolve(model)
        if not resolved.exists:
            pull_with_progress(store, resolved.name)
        with console.status(f"starting {resolved.name}…", spinner="dots"):
            handle = asyncio.run(
                start_local_model(
                    model,
                    port=port,
                    n_ctx=ctx,
                    slots=slots,
                    backend=backend,
                    label="model serve",
                    on_notice=lambda message: console.print(f"[yellow]note:[/] {message}"),
                )
            )
    except (UnknownModelError, LocalModelError) as error:
        raise fail(str(error)) from None
    _hold(handle)


def _hold(handle: LocalModelHandle) -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    console.print(
        f"serving [bold]{handle.model_name}[/] at [bold]{handle.base_url}[/] "
        f"({handle.backend}, {handle.parallel_slots} parallel slots of {handle.n_ctx} tokens; "
        f"Ctrl-C stops)"
    )
    console.print(
        f"[dim]use it: kernelagent run --base-url {handle.base_url} --model {handle.model_name} "
        f'--api {handle.recommended_api} "TASK"   (or just --model local:{handle.model_name})[/]'
    )
    print(handle.base_url, flush=True)  # stdout: for scripts
    paths = handle.lease.paths
    try:
        while not stopped.wait(1.0):
            current = read_state(paths)
            if current is None or current.instance != handle.state.instance:
                raise fail(
                    "the server was stopped (`kernelagent model stop`, or it failed: see "
                    f"{paths.log})"
                )
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
    timeout = handle.state.idle_timeout
    console.print(
        f"released; the server stops after {timeout:.0f}s without sessions (`kernelagent model "
        f"stop` now)"
    )


@commands.command("ps")
def ps(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list on stdout.")] = False,
) -> None:
    """The running model servers: model, port, pid, sessions using them, uptime, memory."""
    services = running_services()
    if json_output:
        print(json.dumps([_as_json(service) for service in services]))
        return
    if not services:
        console.print(
            "no model server is running (the first `kernelagent run --model local` starts one)"
        )
        return
    table = Table(title="model servers")
    for column in (
        "model",
        "backend",
        "url",
        "pid",
        "slots",
        "sessions",
        "uptime",
        "memory",
        "status",
    ):
        table.add_column(column, no_wrap=True)
    for service in services:
        state = service.state
        busy = "" if service.busy_slots is None else f"{service.busy_slots} busy / "
        users = ", ".join(f"{lease.pid} {lease.label}" for lease in service.sessions)
        sessions = f"{len(service.sessions)}" + (
            f" ({users})" if users else f" (stops when idle {state.idle_timeout:.0f}s)"
        )
        memory = f"{service.rss_bytes / 2**20:.0f} MiB" if service.rss_bytes else "?"
        table.add_row(
            state.model,
            state.backend,
            state.base_url,
            str(state.pid),
            f"{busy}{state.parallel_slots}",
            sessions,
            _duration(service.uptime),
            memory,
            state.status,
        )
    console.print(table)


def _as_json(service: RunningService) -> dict[str, object]:
    state = service.state
    return {
        "model": state.model,
        "backend": state.backend,
        "base_url": state.base_url,
        "port": state.port,
        "pid": state.pid,
        "supervisor_pid": state.supervisor_pid,
        "parallel_slots": state.parallel_slots,
        "busy_slots": service.busy_slots,
        "ctx_per_slot": state.ctx_per_slot,
        "sessions": len(service.sessions),
        "users": [lease.model_dump() for lease in service.sessions],
        "uptime_seconds": round(service.uptime, 1),
        "rss_bytes": service.rss_bytes,
        "status": state.status,
        "restarts": state.restarts,
        "idle_timeout": state.idle_timeout,
        "sha256": state.sha256,
        "model_path": state.model_path,
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@commands.command("stop")
def stop_command(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: every running model server).")
    ] = None,
) -> None:
    """Stop a model server now (sessions using it fail after their retries)."""
    try:
        stopped = stop(name)
    except LocalModelError as error:
        raise fail(str(error)) from None
    if not stopped:
        console.print(f"no model server is running{f' for {name}' if name else ''}")
        return
    for state, users in stopped:
        using = f"; {users} session{'s' if users != 1 else ''} used it" if users else ""
        console.print(f"stopped {state.model} (pid {state.pid}, {state.base_url}){using}")


@commands.command("install-server")
def install_server(
    force: Annotated[
        bool, typer.Option(help="Build again even if llama-server is installed.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option(help="Parallel compile jobs (default: the number of cores).")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            help="A llama-cpp-python sdist (.tar.gz or unpacked) to build instead of downloading "
            "it."
        ),
    ] = None,
) -> None:
    """Build llama.cpp's llama-server (parallel decoding) into the models directory.

    Its sources come from the llama-cpp-python sdist on PyPI; ~5-8 minutes on 2 cores,
    needs cmake and a C++ compiler."""
    started = time.monotonic()
    columns = (
        TextColumn("[bold]llama-server[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("checking", total=100)

            def update(event: BuildProgress) -> None:
                bar.update(task, description=event.stage, completed=event.percent or 0)

            binary = install_llama_server(jobs=jobs, force=force, source=source, progress=update)
    except LocalModelError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: nothing was installed")
        raise typer.Exit(130) from None
    info = installed_version() or {}
    console.print(
        f"[green]installed[/] {binary} ({info.get('version', '?')}; "
        f"{time.monotonic() - started:.0f}s)"
    )
