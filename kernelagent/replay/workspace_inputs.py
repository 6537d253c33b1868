"""Finding and copying the files a recorded notebook needs to run again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from kernelagent.errors import KernelAgentError
from kernelagent.hashing import sha256_file
from kernelagent.sandbox.workspace_access import SANDBOX_UID_WHEN_HOST_IS_ROOT

MAX_COPY_BYTES = 2 * 1024**3


class MissingInputError(KernelAgentError, FileNotFoundError):
    """A file the notebook was recorded with is not where the replay looks."""


def recorded_inputs(notebook: NotebookNode) -> list[dict[str, Any]]:
    return list(notebook.metadata.get("kernelagent", {}).get("inputs", []))


def source_workspace(notebook: NotebookNode, notebook_path: Path, explicit: Path | None) -> Path:
    """Where the notebook's input files are: the explicit directory, else the recorded
    workspace if it still exists, else ``workspace/`` next to the notebook, else the
    notebook's own directory."""
    if explicit is not None:
        if not explicit.is_dir():
            raise MissingInputError(f"workspace directory {explicit} does not exist")
        return explicit
    recorded = notebook.metadata.get("kernelagent", {}).get("workspace")
    candidates = [Path(recorded)] if recorded else []
    candidates += [notebook_path.parent / "workspace", notebook_path.parent]
    for candidate in candidates:
        if candidate.is_dir() and _has_inputs(candidate, recorded_inputs(notebook)):
            return candidate
    return notebook_path.parent


def _has_inputs(directory: Path, inputs: list[dict[str, Any]]) -> bool:
    return all((directory / item["name"]).is_file() for item in inputs)


def check_inputs(notebook: NotebookNode, directory: Path) -> list[str]:
    """Problems with the recorded inputs in ``directory``: missing or changed files."""
    problems = []
    for item in recorded_inputs(notebook):
        path = directory / item["name"]
        if not path.is_file():
            problems.append(f"missing input file {item['name']} (expected in {directory})")
        elif item.get("sha256") and sha256_file(path) != item["sha256"]:
            problems.append(
                f"input file {item['name']} differs from the recorded one (sha256 changed)"
            )
    return problems


def copy_workspace(
    source: Path, destination: Path, *, only_inputs: list[str] | None = None
) -> None:
    """Copy what a replay needs into a fresh workspace, never touching the source."""
    _copy(source, destination, only_inputs)
    share_with_sandbox_user(destination)


def share_with_sandbox_user(directory: Path) -> None:
    """When we run as root, hand a workspace we made to the sandbox's non-root user."""
    if os.geteuid() != 0:
        return
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, SANDBOX_UID_WHEN_HOST_IS_ROOT, SANDBOX_UID_WHEN_HOST_IS_ROOT)


def _copy(source: Path, destination: Path, only_inputs: list[str] | None) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    if only_inputs is not None:
        for name in only_inputs:
            if (source / name).is_file():
                target = destination / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, target)
        return
    total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    if total > MAX_COPY_BYTES:
        raise MissingInputError(
            f"{source} holds {total / 1e9:.1f} GB; pass --workspace with just the notebook's inputs"
        )
    shutil.copytree(
        source,
        destination,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.ipynb", "__pycache__"),
    )
