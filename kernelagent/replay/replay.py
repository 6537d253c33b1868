"""Replay: re-execute a notebook's code cells in a fresh sandbox and compare outputs.

A library first (restore and crash recovery build on it), the CLI second. Works on
any valid Python .ipynb; for kernelagent's own notebooks it also uses the recorded
inputs, statuses and manifests.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nbformat
from nbformat import NotebookNode
from pydantic import BaseModel, Field

from kernelagent.errors import KernelAgentError
from kernelagent.notebook.cell_policy import comparison_opt_out, is_side_effect
from kernelagent.notebook.compare import CompareOptions, compare_outputs
from kernelagent.notebook.recorder import load_notebook
from kernelagent.replay.workspace_inputs import (
    check_inputs,
    copy_workspace,
    recorded_inputs,
    source_workspace,
)
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import warm_up_as_recorded

CellOutcome = Literal["matched", "diverged", "error", "skipped"]
SideEffectPolicy = Literal["run", "skip", "ask"]
AskSideEffect = Callable[[int, str], Awaitable[bool]]

NEVER_RAN = ("rejected", "awaiting_approval")
"""Recorded statuses of cells a person kept from running: replay does not run them either."""

EXIT_MATCHED = 0
EXIT_DIVERGED = 1
EXIT_FAILED = 2


class ReplayError(KernelAgentError, RuntimeError):
    """The replay could not run at all; the message names the cause."""


class ReplayOptions(BaseModel):
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    until: int | str | None = None
    """Stop after this cell: a 1-based code-cell number, or a cell id."""
    workspace: Path | None = None
    """Where the notebook's inputs are (default: the recorded or adjacent workspace)."""
    compare: CompareOptions = Field(default_factory=CompareOptions)
    timeout: float = 300.0
    side_effects: SideEffectPolicy = "skip"


@dataclass
class CellReport:
    number: int
    """1-based among code cells."""
    cell_id: str
    outcome: CellOutcome
    reason: str = ""
    diff: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell": self.number,
            "cell_id": self.cell_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "diff": self.diff,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ReplayReport:
    notebook: Path
    cells: list[CellReport] = field(default_factory=list)
    replayed: NotebookNode | None = None
    workspace: Path | None = None
    seconds: float = 0.0
    warm_up: str | None = None
    """The recorded warm-up, run before the first cell (as the recorded kernel had)."""

    def count(self, outcome: CellOutcome) -> int:
        return sum(1 for cell in self.cells if cell.outcome == outcome)

    @property
    def exit_code(self) -> int:
        return (
            EXIT_MATCHED
            if not any(c.outcome in ("diverged", "error") for c in self.cells)
            else EXIT_DIVERGED
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "notebook": str(self.notebook),
            "matched": self.count("matched"),
            "diverged": self.count("diverged"),
            "error": self.count("error"),
            "skipped": self.count("skipped"),
            "seconds": round(self.seconds, 3),
            "warm_up": self.warm_up,
            "cells": [cell.as_dict() for cell in self.cells],
        }


def code_cells(notebook: NotebookNode) -> list[NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def check_language(notebook: NotebookNode, path: Path) -> None:
    language = (
        notebook.metadata.get("kernelspec", {}).get("language")
        or notebook.metadata.get("language_info", {}).get("name")
        or "python"
    )
    if language.lower() != "python":
        raise ReplayError(
            f"{path}: replay runs Python notebooks; this one's kernel language is {language!r}"
        )


def stop_index(cells: list[NotebookNode], until: int | str | None, path: Path) -> int:
    """How many code cells to run."""
    if until is None:
        return len(cells)
    if isinstance(until, int) or (isinstance(until, str) and until.isdigit()):
        number = int(until)
        if not 1 <= number <= len(cells):
            raise ReplayError(
                f"{path}: --until {number} is out of range (1..{len(cells)} code cells)"
            )
        return number
    for index, cell in enumerate(cells):
        if cell.get("id") == until:
            return index + 1
    raise ReplayError(f"{path}: no code cell has id {until!r}")


def recorded_status(cell: NotebookNode) -> str:
    """ok or error, from our metadata or, for plain notebooks, from the outputs."""
    status = cell.metadata.get("kernelagent", {}).get("status")
    if status:
        return str(status)
    return (
        "error" if any(o.get("output_type") == "error" for o in cell.get("outputs", [])) else "ok"
    )


async def prepare_workspace(
    notebook: NotebookNode, path: Path, explicit: Path | None, destination: Path
) -> Path:
    source = source_workspace(notebook, path, explicit)
    inputs = recorded_inputs(notebook)
    if inputs:
        problems = [p for p in check_inputs(notebook, source) if p.startswith("missing")]
        if problems:
            raise ReplayError(f"{path}: " + "; ".join(problems) + " (pass --workspace DIR)")
        copy_workspace(source, destination, only_inputs=[item["name"] for item in inputs])
    else:
        copy_workspace(source, destination)
    return destination


async def replay_notebook(
    path: str | Path,
    options: ReplayOptions | None = None,
    *,
    ask: AskSideEffect | None = None,
) -> ReplayReport:
    """Re-execute ``path``'s code cells in a fresh sandbox; never modifies ``path``."""
    options = options or ReplayOptions()
    path = Path(path)
    original = load_notebook(path)
    check_language(original, path)
    cells = code_cells(original)
    count = stop_index(cells, options.until, path)
    replayed = copy.deepcopy(original)
    replayed_cells = code_cells(replayed)
    workspace = Path(tempfile.mkdtemp(prefix="kernelagent-replay-"))
    await prepare_workspace(original, path, options.workspace, workspace)
    report = ReplayReport(notebook=path, replayed=replayed, workspace=workspace)
    started = time.perf_counter()
    sandbox = await Sandbox.start(options.sandbox, workspace)
    try:
        warmed = await warm_up_as_recorded(sandbox, original.metadata)
        report.warm_up = warmed.code if warmed is not None else None
        dead_reason = ""
        for index, cell in enumerate(cells[:count]):
            number = index + 1
            cell_id = str(cell.get("id", number))
            if dead_reason:
                report.cells.append(
                    CellReport(number, cell_id, "skipped", f"not run: {dead_reason}")
                )
                continue
            if not cell.source.strip():
                report.cells.append(CellReport(number, cell_id, "skipped", "empty cell"))
                continue
            never_ran = recorded_status(cell)
            if never_ran in NEVER_RAN:
                report.cells.append(
                    CellReport(number, cell_id, "skipped", f"not run when recorded ({never_ran})")
                )
                continue
            if is_side_effect(cell) and not await _allow_side_effect(
                options.side_effects, ask, number, cell.source
            ):
                report.cells.append(
                    CellReport(number, cell_id, "skipped", "side-effect cell, not run")
                )
                continue
            result = await sandbox.execute(cell.source, timeout=options.timeout, cell_id=cell_id)
            replayed_cells[index].outputs = [nbformat.from_dict(o) for o in result.outputs]
            replayed_cells[index].execution_count = result.execution_count
            cell_report = judge(cell, result.status, result.detail, result.outputs, options.compare)
            cell_report.number, cell_report.cell_id = number, cell_id
            cell_report.seconds = result.duration
            report.cells.append(cell_report)
            _apply_display_updates(report, cells, replayed_cells, result.display_updates, options)
            if result.status == "kernel_died":
                dead_reason = f"the kernel died at cell {number} ({result.detail})"
    finally:
        await sandbox.shutdown()
    report.seconds = time.perf_counter() - started
    return report


def _apply_display_updates(
    report: ReplayReport,
    cells: list[NotebookNode],
    replayed_cells: list[NotebookNode],
    updates: dict[str, list[dict[str, Any]]],
    options: ReplayOptions,
) -> None:
    """A later cell updated displays of earlier ones: record and judge them again."""
    for cell_report in report.cells:
        outputs = updates.get(cell_report.cell_id)
        if outputs is None or cell_report.outcome not in ("matched", "diverged"):
            continue
        index = cell_report.number - 1
        replayed_cells[index].outputs = [nbformat.from_dict(o) for o in outputs]
        again = judge(cells[index], "ok", "", outputs, options.compare)
        cell_report.outcome, cell_report.reason, cell_report.diff = (
            again.outcome,
            again.reason,
            again.diff,
        )


def judge(
    cell: NotebookNode,
    status: str,
    detail: str,
    outputs: list[dict[str, Any]],
    options: CompareOptions,
) -> CellReport:
    """Compare one replayed cell with its record."""
    expected = recorded_status(cell)
    if status in ("timeout", "kernel_died"):
        return CellReport(0, "", "error", f"{status}: {detail}")
    if status == "error" and expected != "error":
        error = next((o for o in outputs if o["output_type"] == "error"), {})
        hint = ""
        if error.get("ename") == "FileNotFoundError":
            hint = " (a data file the cell reads is missing: pass --workspace DIR with it)"
        return CellReport(0, "", "error", f"{error.get('ename')}: {error.get('evalue')}{hint}")
    opt_out = comparison_opt_out(cell)
    if opt_out:
        return CellReport(0, "", "skipped", f"not compared: {opt_out}")
    comparison = compare_outputs(list(cell.get("outputs", [])), outputs, options)
    if comparison.status == "matched":
        return CellReport(0, "", "matched")
    return CellReport(0, "", "diverged", "; ".join(comparison.reasons), comparison.diff)


async def _allow_side_effect(
    policy: SideEffectPolicy, ask: AskSideEffect | None, number: int, code: str
) -> bool:
    if policy == "run":
        return True
    if policy == "ask" and ask is not None:
        return await ask(number, code)
    return False
