"""The MCP tools on the session's workspace files: list, read, write. Only inside the
workspace (the directory mounted as /workspace in the sandbox): a path that leads outside
it, through ``..``, an absolute path or a symlink, is refused with a message that says so."""

from __future__ import annotations

import os
from pathlib import Path

from kernelagent.errors import KernelAgentError
from kernelagent.sandbox.workspace_access import share_with_sandbox

MAX_READ_BYTES = 1_000_000
MAX_LISTED = 500


class WorkspacePathError(KernelAgentError, ValueError):
    """A file tool was given a path it may not use."""


def resolve(workspace: Path, relative: str, kernel_workspace: str = "/workspace") -> Path:
    """The host path of ``relative`` in the workspace; refuses anything outside it."""
    workspace = workspace.resolve()
    text = relative.strip() or "."
    if text == kernel_workspace or text.startswith(kernel_workspace.rstrip("/") + "/"):
        text = "." + text[len(kernel_workspace.rstrip("/")) :]
    candidate = Path(text)
    path = (workspace / candidate).resolve()
    if candidate.is_absolute() or (path != workspace and workspace not in path.parents):
        raise WorkspacePathError(
            f"{relative!r} is outside the session's workspace; the file tools only reach files "
            f"in the workspace ({kernel_workspace} in the kernel)",
            "give a path relative to the workspace, e.g. 'data.csv' or 'figures/plot.png'",
        )
    return path


def list_files(workspace: Path, relative: str = ".") -> str:
    root = resolve(workspace, relative)
    if not root.is_dir():
        raise WorkspacePathError(f"{relative!r} is not a directory in the workspace")
    lines: list[str] = []
    base = workspace.resolve()
    for path in sorted(root.rglob("*")):
        if len(lines) >= MAX_LISTED:
            lines.append(f"... (more than {MAX_LISTED} entries; list a subdirectory)")
            break
        if any(part.startswith(".") for part in path.relative_to(base).parts):
            continue
        name = path.relative_to(base).as_posix()
        lines.append(f"{name}/" if path.is_dir() else f"{name}  ({path.stat().st_size} bytes)")
    return "\n".join(lines) or "(the workspace is empty)"


def read_file(workspace: Path, relative: str) -> str:
    path = resolve(workspace, relative)
    if not path.is_file():
        raise WorkspacePathError(
            f"{relative!r} is not a file in the workspace", "list_files shows what is there"
        )
    data = path.read_bytes()[: MAX_READ_BYTES + 1]
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_READ_BYTES:
        text += f"\n[... cut at {MAX_READ_BYTES} bytes; read the rest with the python tool]"
    return text


def write_file(workspace: Path, relative: str, content: str) -> str:
    path = resolve(workspace, relative)
    if path.is_dir():
        raise WorkspacePathError(f"{relative!r} is a directory in the workspace")
    created = []
    parent = path.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.kernelagent-tmp")
    temporary.write_text(content)
    os.replace(temporary, path)
    for made in [*reversed(created), path]:
        share_with_sandbox(made)  # the kernel's user can change what the client wrote
    return (
        f"wrote {path.relative_to(workspace.resolve()).as_posix()} ({len(content.encode())} bytes)"
    )
