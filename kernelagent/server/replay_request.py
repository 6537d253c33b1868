"""``POST replay``: re-execute a notebook under the server's root and report per cell."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kernelagent.errors import InvalidRequestError
from kernelagent.literals import SandboxKind
from kernelagent.notebook.recorder import NotebookFormatError
from kernelagent.replay.replay import ReplayError, ReplayOptions, replay_notebook
from kernelagent.replay.workspace_inputs import MissingInputError
from kernelagent.sandbox.settings import SandboxSettings


async def replay_report(
    path: Path, shown_as: str, root: Path, sandbox: SandboxKind, until: int | str | None
) -> dict[str, Any]:
    """The replay report of the notebook at ``path`` (``shown_as`` to the client), which
    is inside the server's root directory ``root``."""
    if not path.is_file():
        raise InvalidRequestError(
            f"notebook not found: {shown_as}",
            hint=f"the path is relative to the server's root directory ({root})",
        )
    options = ReplayOptions(sandbox=SandboxSettings(kind=sandbox), until=until)
    try:
        report = await replay_notebook(path, options)
    except (ReplayError, NotebookFormatError, MissingInputError) as error:
        raise InvalidRequestError(
            str(error), hint="replay runs the code cells of a valid Python notebook"
        ) from None
    if report.workspace is not None:
        shutil.rmtree(report.workspace, ignore_errors=True)
    return report.as_dict()
