"""Small helpers of the loop: what the workspace holds, and outputs as a notebook shows them."""

from __future__ import annotations

from pathlib import Path


def merge_streams(outputs: list[dict]) -> list[dict]:
    """Join consecutive chunks of the same stream, as a notebook shows them."""
    merged: list[dict] = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and output["output_type"] == last["output_type"] == "stream"
            and output["name"] == last["name"]
        ):
            merged[-1] = {**last, "text": last["text"] + output["text"]}
        else:
            merged.append(dict(output))
    return merged


def workspace_files(workspace: Path, limit: int = 30) -> list[str]:
    """Names of the files the task starts with, for the system prompt."""
    names = sorted(
        str(path.relative_to(workspace))
        for path in workspace.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(workspace).parts)
    )
    return names[:limit] + ([f"... and {len(names) - limit} more"] if len(names) > limit else [])
