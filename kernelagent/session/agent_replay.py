"""Agent-level replay: re-drive the loop with the model turns recorded in a notebook.

No model is needed: a :class:`RecordedModel` plays back the assistant turns stored in
the notebook's conversation, the loop runs them in a fresh sandbox and records a new
notebook, and the two notebooks' code cells are compared. A session that reproduces
has the same cells, in the same order, with matching outputs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kernelagent.agent.loop import LoopLimits
from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ModelTurn,
    TextDeltaCallback,
    ToolSpec,
    UserItem,
)
from kernelagent.events import Usage
from kernelagent.notebook.compare import CompareOptions
from kernelagent.notebook.recorder import load_notebook
from kernelagent.replay.replay import (
    CellReport,
    ReplayError,
    ReplayReport,
    code_cells,
    judge,
    prepare_workspace,
)
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import warm_up_as_recorded
from kernelagent.session.session import Session, SessionConfig


class RecordedModel:
    """A model that answers with the assistant turns of a recorded conversation, in order."""

    supports_images = False

    def __init__(self, turns: list[AssistantItem], name: str = "recorded") -> None:
        self.turns = list(turns)
        self.name = name
        self.played = 0

    async def turn(
        self,
        conversation: Conversation,
        tools: list[ToolSpec],
        on_text_delta: TextDeltaCallback | None = None,
        *,
        temperature: float | None = None,
    ) -> ModelTurn:
        if self.played >= len(self.turns):
            raise ReplayError(
                "the recorded conversation has no more model turns: the session diverged"
            )
        item = self.turns[self.played]
        self.played += 1
        return ModelTurn(
            text=item.text, tool_calls=item.tool_calls, usage=Usage(), response_id=item.response_id
        )


def recorded_turns(path: Path) -> tuple[str, list[AssistantItem]]:
    notebook = load_notebook(path)
    stored = notebook.metadata.get("kernelagent", {}).get("conversation") or {}
    data = stored.get("conversation")
    if not data:
        raise ReplayError(
            f"{path}: no recorded conversation in the notebook metadata; agent replay needs a "
            f"kernelagent session"
        )
    conversation = Conversation.model_validate(data)
    task = next((item.text for item in conversation.items if isinstance(item, UserItem)), "")
    return task, [item for item in conversation.items if isinstance(item, AssistantItem)]


async def replay_agent(
    path: str | Path,
    *,
    sandbox: SandboxSettings | None = None,
    workspace: Path | None = None,
    compare: CompareOptions | None = None,
) -> ReplayReport:
    """Re-run the recorded session through the agent loop and compare the notebooks."""
    path = Path(path)
    original = load_notebook(path)
    task, turns = recorded_turns(path)
    model = RecordedModel(turns)
    tmp = Path(tempfile.mkdtemp(prefix="kernelagent-agent-replay-"))
    await prepare_workspace(original, path, workspace, tmp / "workspace")
    config = SessionConfig(
        model="recorded",
        sandbox=sandbox or SandboxSettings(),
        limits=LoopLimits(max_steps=len(turns) + 1),
    )
    box = await Sandbox.start(config.sandbox, tmp / "workspace")
    await warm_up_as_recorded(box, original.metadata)
    session = await Session.start(config, model, sandbox=box, notebook=tmp / "replayed.ipynb")
    try:
        await session.run(task)
    finally:
        await session.close()
    replayed = load_notebook(tmp / "replayed.ipynb")
    report = ReplayReport(notebook=path, replayed=replayed, workspace=tmp / "workspace")
    before, after = code_cells(original), code_cells(replayed)
    options = compare or CompareOptions()
    for number, cell in enumerate(before, start=1):
        cell_id = str(cell.get("id", number))
        if number > len(after):
            report.cells.append(
                CellReport(number, cell_id, "error", "the replayed session has no such cell")
            )
            continue
        new = after[number - 1]
        if new.source != cell.source:
            report.cells.append(
                CellReport(
                    number, cell_id, "diverged", "different code", f"-{cell.source}\n+{new.source}"
                )
            )
            continue
        status = new.metadata.get("kernelagent", {}).get("status", "ok")
        cell_report = judge(cell, status, "", list(new.outputs), options)
        cell_report.number, cell_report.cell_id = number, cell_id
        report.cells.append(cell_report)
    for number in range(len(before) + 1, len(after) + 1):
        report.cells.append(
            CellReport(
                number, str(after[number - 1].get("id")), "diverged", "extra cell in the replay"
            )
        )
    return report
