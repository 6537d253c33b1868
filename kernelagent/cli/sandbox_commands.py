"""``kernelagent image``, ``kernelagent kernelspec`` and ``kernelagent cleanup``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kernelagent.cli.output import console, fail, fail_with
from kernelagent.errors import KernelAgentError
from kernelagent.sandbox.images import DEFAULT_IMAGE

commands = typer.Typer()
image_app = typer.Typer(help="Build the sandbox image.", no_args_is_help=True)
kernelspec_app = typer.Typer(
    help="Install a Jupyter kernelspec that runs in the sandbox.", no_args_is_help=True
)
commands.add_typer(image_app, name="image")
commands.add_typer(kernelspec_app, name="kernelspec")


@image_app.command("build")
def image_build(
    name: Annotated[str, typer.Option(help="Image name.")] = DEFAULT_IMAGE,
    route: Annotated[
        str,
        typer.Option(
            help="rootfs: Debian packages + docker import (no registry); dockerfile: docker build."
        ),
    ] = "rootfs",
    base: Annotated[
        str, typer.Option(help="Base image for the dockerfile route.")
    ] = "python:3.12-slim",
    force: Annotated[bool, typer.Option(help="Rebuild even if the image is current.")] = False,
) -> None:
    """Build the sandbox image (python3, ipykernel, numpy, pandas, scipy, scikit-learn, matplotlib,
    non-root user)."""
    if route not in ("rootfs", "dockerfile"):
        raise fail(f"unknown route {route!r}: use rootfs or dockerfile")
    from kernelagent.sandbox.docker_provisioner import docker_client
    from kernelagent.sandbox.images import (
        build_dockerfile_image,
        build_rootfs_image,
        image_is_current,
    )

    try:
        client = docker_client()
        if not force and image_is_current(client, name, route):
            console.print(f"{name} is up to date (use --force to rebuild)")
            return
        progress = lambda line: console.print(f"[dim]·[/] {line}")  # noqa: E731
        if route == "rootfs":
            build_rootfs_image(client, name, progress=progress)
        else:
            build_dockerfile_image(client, name, base=base, progress=progress)
    except KernelAgentError as error:  # Docker unavailable, the build failed
        raise fail_with(error) from None


@kernelspec_app.command("install")
def kernelspec_install(
    name: Annotated[str, typer.Option(help="Kernelspec name.")] = "kernelagent",
    image: Annotated[str, typer.Option(help="Sandbox image.")] = DEFAULT_IMAGE,
    memory: Annotated[str, typer.Option(help="Memory limit (Docker syntax).")] = "1g",
    cpus: Annotated[float, typer.Option(help="CPU limit in cores.")] = 1.0,
    pids: Annotated[int, typer.Option(help="Process/thread limit.")] = 256,
    allow_net: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-net",
            metavar="HOST[:PORT]",
            help="A destination the kernel may reach through the audited egress proxy "
            "(repeatable). Default: no network.",
        ),
    ] = None,
    user: Annotated[
        bool, typer.Option("--user/--system", help="Install for this user or system-wide.")
    ] = True,
    sys_prefix: Annotated[
        bool, typer.Option(help="Install into sys.prefix (e.g. a virtualenv).")
    ] = False,
) -> None:
    """Install a kernelspec so JupyterLab, nbclient, papermill and jupyter console can use the
    sandbox."""
    import sys

    from kernelagent.sandbox.settings import SandboxSettings

    try:
        settings = SandboxSettings(
            image=image, mem_limit=memory, cpus=cpus, pids_limit=pids
        ).allowing(allow_net or [])
    except ValueError as error:
        raise fail(str(error), 2) from None
    from kernelagent.sandbox.maintenance import install_kernelspec

    path = install_kernelspec(settings, name, user=user, prefix=sys.prefix if sys_prefix else None)
    console.print(f"installed kernelspec [bold]{name}[/] in {path}")
    if settings.network_allow:
        console.print(
            f"egress allowed to {', '.join(settings.network_allow)}; every request is logged under "
            "$(jupyter --data-dir)/kernelagent/egress/"
        )


@commands.command()
def cleanup(
    all_: Annotated[
        bool, typer.Option("--all", help="Remove every kernelagent sandbox, not just orphans.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be removed.")] = False,
) -> None:
    """Remove orphaned sandbox containers (their owner process is gone, or they stopped;
    with $KERNELAGENT_CLUSTER also those whose session is placed on no live node here)."""
    from kernelagent.cluster.placement import cluster_address

    address = cluster_address()
    try:
        if address:
            found, remove = _on_cluster(address)
        else:
            from kernelagent.sandbox.maintenance import list_sandboxes, remove_sandboxes

            found, remove = list_sandboxes(keep_kernel_ids=_kept_kernel_ids()), remove_sandboxes
    except KernelAgentError as error:  # no Docker engine, an unreachable cluster or store
        raise fail_with(error) from None
    targets = [s for s in found if all_ or s.orphan]
    table = Table("container", "status", "owner pid", "action", "why")
    for sandbox in found:
        action = ("would remove" if dry_run else "removed") if sandbox in targets else "kept"
        table.add_row(
            sandbox.name, sandbox.status, str(sandbox.owner_pid or ""), action, sandbox.why
        )
    if found:
        console.print(table)
    if not dry_run:
        removed = remove(targets)
        console.print(f"removed {removed} sandbox(es)")


def _on_cluster(address: str):
    """The sandboxes here judged with the cluster's store: a session's sandbox whose node is
    gone is stale even while the session waits (kernelagent.cluster.sweep)."""
    from kernelagent.cluster.connection import connect
    from kernelagent.cluster.sweep import live_nodes_here, remove_stale, stale_sandboxes
    from kernelagent.session.store import SessionStore

    store = SessionStore()
    connect(address, sessions=False)
    return stale_sandboxes(store, live_nodes_here()), lambda targets: remove_stale(store, targets)


def _kept_kernel_ids() -> frozenset[str]:
    """Kernel ids of sandboxes that durable sessions will re-attach to."""
    from kernelagent.session.store import SessionStore

    return frozenset(
        record.sandbox_state["kernel_id"]
        for record in SessionStore().sessions_with_live_sandboxes()
        if record.sandbox_state and "kernel_id" in record.sandbox_state
    )
