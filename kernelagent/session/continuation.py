"""Continue a recorded session from its notebook: restore state, restore the
conversation, run a new instruction. Needs only the notebook and its workspace files,
so it works on a notebook copied from another machine."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from nbformat import NotebookNode

from kernelagent.agent.model import Conversation, Model
from kernelagent.agent.prompts import system_prompt
from kernelagent.agent.workspace import workspace_files
from kernelagent.errors import KernelAgentError
from kernelagent.events import Event
from kernelagent.notebook.recorder import load_notebook
from kernelagent.replay.replay import code_cells
from kernelagent.replay.restore import RestoreReport, restore_state
from kernelagent.replay.workspace_inputs import copy_workspace, source_workspace
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.session.session import Session, SessionConfig, sessions_home
from kernelagent.session.stream import EventStream


class ContinueError(KernelAgentError, RuntimeError):
    pass


def continued_path(path: Path) -> Path:
    """``analysis.ipynb`` -> ``analysis-continued.ipynb`` (then -2, -3, ... if taken)."""
    candidate = path.with_name(f"{path.stem}-continued{path.suffix}")
    number = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-continued-{number}{path.suffix}")
        number += 1
    return candidate


def recorded_conversation(notebook: NotebookNode, system: str) -> Conversation:
    """The conversation stored in the notebook; for plain notebooks, a summary of its code."""
    stored = notebook.metadata.get("kernelagent", {}).get("conversation") or {}
    data = stored.get("conversation")
    if data:
        conversation = Conversation.model_validate(data)
        conversation.system = system
        return conversation
    conversation = Conversation(system=system)
    sources = [cell.source for cell in code_cells(notebook) if cell.source.strip()]
    if sources:
        listing = "\n\n".join(f"# cell {n}\n{src}" for n, src in enumerate(sources, start=1))
        conversation.add_user(
            f"This notebook's code has already been run in your kernel:\n\n{listing}"
        )
    return conversation


async def continue_notebook(
    path: str | Path,
    instruction: str,
    config: SessionConfig,
    model: Model,
    *,
    in_place: bool = False,
    out: str | Path | None = None,
    workspace: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> tuple[Session, RestoreReport]:
    """Restore the recorded state in a new sandbox and return a session ready to ``run``."""
    path = Path(path)
    notebook = load_notebook(path)
    target = path if in_place else Path(out) if out else continued_path(path)
    if target != path:
        shutil.copyfile(path, target)
    source = source_workspace(notebook, path, Path(workspace) if workspace else None)
    session_workspace = sessions_home() / f"continue-{uuid.uuid4().hex[:12]}" / "workspace"
    copy_workspace(source, session_workspace)
    sandbox = await Sandbox.start(config.sandbox, session_workspace)
    try:
        report = await restore_state(notebook, sandbox, timeout=config.limits.cell_timeout)
        conversation = recorded_conversation(
            notebook,
            system_prompt(
                sandbox.kernel_workspace,
                workspace_files(sandbox.workspace),
                code_blocks=config.api == "code-blocks",
            ),
        )
        stream = EventStream("")
        if on_event is not None:
            stream.subscribe(on_event)
        steps = int(
            notebook.metadata.get("kernelagent", {}).get("conversation", {}).get("steps", 0) or 0
        )
        session = await Session.continue_from(
            target, config, model, sandbox, conversation, stream=stream, steps=steps
        )
        session.recall_pending = True  # the system prompt was written again, without memories
    except BaseException:
        await sandbox.shutdown()
        raise
    return session, report


def restored_note(report: RestoreReport) -> str:
    """What the model is told before the new instruction."""
    return (
        "(This session was restored in a new sandbox from its notebook: "
        f"{report.summary()} Files in the workspace are as they were.)"
    )
