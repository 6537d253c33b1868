"""``kernelagent pool status|start|stop``: the machine-wide pool of warmed sandboxes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from kernelagent.cli.output import console, fail

if TYPE_CHECKING:
    from kernelagent.sandbox.pool_files import PoolState

DEFAULT_WARM_UP_HELP = "numpy, pandas and matplotlib (inline) imported"

pool_app = typer.Typer(
    help="The machine's pool of warmed sandboxes that `kernelagent run` takes from.",
    no_args_is_help=True,
)
commands = typer.Typer()
commands.add_typer(pool_app, name="pool")


@pool_app.command("status")
def status(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list on stdout.")] = False,
) -> None:
    """The running pools: image, limits, sandboxes ready and starting, memory, demand."""
    from rich.table import Table

    from kernelagent.sandbox.pool_client import running_pools

    pools = [state for _, state in running_pools()]
    if json_output:
        print(json.dumps([state.model_dump(mode="json") for state in pools]))
        return
    if not pools:
        console.print(
            "no sandbox pool is running (the next `kernelagent run` starts one; or "
            "`kernelagent pool start`)"
        )
        return
    table = Table(title="sandbox pools")
    for column in (
        "pool",
        "image",
        "limits",
        "ready",
        "starting",
        "size",
        "memory each",
        "handed out",
        "idle stop",
    ):
        table.add_column(column, no_wrap=True)
    for state in pools:
        table.add_row(
            state.key,
            state.image,
            f"{state.mem_limit}, {state.cpus:g} CPU",
            str(state.ready),
            str(state.starting),
            f"{state.target} ({state.min_size}..{state.max_size}, {state.memory_budget_mb} MB)",
            f"{state.memory_per_sandbox_mb:.0f} MB" if state.memory_per_sandbox_mb else "?",
            f"{state.handed_out} ({state.discarded_dead} dead discarded)",
            _idle_stop(state),
        )
    console.print(table)


def _idle_stop(state: PoolState) -> str:
    since = max(state.started, state.last_request or 0.0)
    left = state.idle_timeout - (time.time() - since)
    return f"in {max(0.0, left):.0f}s"


@pool_app.command("start")
def start(
    size: Annotated[
        int, typer.Option(min=0, max=16, help="Sandboxes kept ready at least (the pool's minimum).")
    ] = 1,
    max_size: Annotated[
        int | None,
        typer.Option(help="At most this many under demand (default: $KERNELAGENT_POOL_MAX or 4)."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Sandbox image (default: the one `kernelagent run` uses).")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds without a request before the pool stops (default: "
            "$KERNELAGENT_POOL_IDLE_TIMEOUT or 600)."
        ),
    ] = None,
    memory_mb: Annotated[
        int | None,
        typer.Option(
            help="Memory budget of the ready sandboxes in MB (default: "
            "$KERNELAGENT_POOL_MEMORY_MB or 1024)."
        ),
    ] = None,
    warm_up: Annotated[
        str | None,
        typer.Option(
            help="Code each pooled kernel runs before it is handed out (default: "
            f"{DEFAULT_WARM_UP_HELP})."
        ),
    ] = None,
) -> None:
    """Start the pool for `kernelagent run`'s default sandbox (or resize it); wait until SIZE
    are ready."""
    from kernelagent.sandbox.docker_provisioner import DockerUnavailableError
    from kernelagent.sandbox.pool_client import PoolOptions, start_pool
    from kernelagent.sandbox.sandbox import SandboxError
    from kernelagent.sandbox.settings import SandboxSettings
    from kernelagent.sandbox.warm_up import DEFAULT_WARM_UP

    warm_up = warm_up if warm_up is not None else DEFAULT_WARM_UP
    settings = SandboxSettings(image=image) if image else SandboxSettings()
    base = PoolOptions.from_env()
    options = PoolOptions(
        size,
        max_size if max_size is not None else base.max_size,
        memory_mb if memory_mb is not None else base.memory_budget_mb,
        idle_timeout if idle_timeout is not None else base.idle_timeout,
    )
    try:
        with console.status(f"starting {size} warmed sandboxes…", spinner="dots"):
            state = asyncio.run(
                start_pool(settings, warm_up, size, max_size=options.max_size, options=options)
            )
    except (DockerUnavailableError, SandboxError) as error:
        raise fail(str(error)) from None
    memory = f", {state.memory_per_sandbox_mb:.0f} MB each" if state.memory_per_sandbox_mb else ""
    console.print(
        f"pool {state.key}: {state.ready} ready ({state.min_size}..{state.max_size}{memory}); "
        f"stops after {state.idle_timeout:.0f}s without a request (`kernelagent pool stop` now)"
    )


@pool_app.command("stop")
def stop(
    pool: Annotated[
        str | None, typer.Argument(help="A pool's key (`pool status`); default: all.")
    ] = None,
) -> None:
    """Stop the pools' ready sandboxes and supervisors; sandboxes sessions took stay theirs."""
    from kernelagent.sandbox.pool_client import stop_pools

    stopped = stop_pools(pool)
    if not stopped:
        console.print("no sandbox pool is running")
        return
    for state in stopped:
        console.print(f"stopped pool {state.key} ({state.image})")
