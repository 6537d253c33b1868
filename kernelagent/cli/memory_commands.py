"""``kernelagent memory list | search QUERY | show ID | forget ID | export``: what the agent
remembers across sessions, for the user to read and correct. ``--json`` prints the stable
shape (a list of memories, each with its ``id``)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from kernelagent.cli.output import console, fail_with
from kernelagent.errors import KernelAgentError

if TYPE_CHECKING:
    from kernelagent.memory import Memory, MemoryStore

commands = typer.Typer()
memory_app = typer.Typer(
    help="What the agent remembers across sessions (dataset cards, findings, facts).",
    no_args_is_help=True,
)
commands.add_typer(memory_app, name="memory")

ProjectOption = Annotated[
    str | None, typer.Option(help="A project namespace (default: your own memories).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _store(project: str | None) -> MemoryStore:
    from kernelagent.memory import open_memory_store
    from kernelagent.session.store import default_home

    return open_memory_store(default_home(), project=project)


def _print(memories: list[Memory], json_output: bool) -> None:
    if json_output:
        print(json.dumps([memory.as_json() for memory in memories]))
        return
    if not memories:
        console.print("[dim]no memories[/]")
        return
    now = time.time()
    for memory in memories:
        about = f" {memory.dataset_name}" if memory.dataset_name else ""
        text = " ".join(memory.text.split())
        text = text if len(text) <= 100 else text[:99] + "…"
        age = _age(now - memory.updated_at)
        print(f"{memory.id}  {memory.kind:<10} {age:>4}{about}  {text}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@memory_app.command("list")
def list_memories(project: ProjectOption = None, json_output: JsonOption = False) -> None:
    """Every memory, newest first."""
    _print(_store(project).list(), json_output)


@memory_app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words to look for (full-text, stemmed).")],
    project: ProjectOption = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """Memories that match QUERY, best first."""
    _print(_store(project).search(query, limit=limit), json_output)


@memory_app.command()
def show(
    memory_id: Annotated[str, typer.Argument(help="A memory id (or a unique prefix).")],
    project: ProjectOption = None,
    json_output: JsonOption = False,
) -> None:
    """One memory in full, with where it came from."""
    try:
        memory = _store(project).get(memory_id)
    except KernelAgentError as error:
        raise fail_with(error) from None
    if json_output:
        print(json.dumps(memory.as_json()))
        return
    print(f"{memory.id} ({memory.kind})")
    for label, value in (
        ("dataset", f"{memory.dataset_name or ''} {memory.dataset_sha256 or ''}".strip()),
        ("session", memory.session_id),
        ("cell", memory.cell_id),
        ("notebook", memory.notebook),
        ("project", memory.project),
    ):
        if value:
            print(f"  {label}: {value}")
    print(f"\n{memory.text}")


@memory_app.command()
def forget(
    memory_id: Annotated[str, typer.Argument(help="A memory id (or a unique prefix).")],
    project: ProjectOption = None,
) -> None:
    """Delete a memory: later sessions no longer see it."""
    try:
        memory = _store(project).forget(memory_id)
    except KernelAgentError as error:
        raise fail_with(error) from None
    console.print(f"forgot {memory.id}")


@memory_app.command()
def export(
    project: ProjectOption = None,
    json_output: Annotated[
        bool, typer.Option("--json/--lines", help="JSON (default) or lines.")
    ] = True,
) -> None:
    """Every memory as JSON (the default) or as lines."""
    _print(_store(project).list(), json_output)
