"""Restore: rebuild a session's kernel state in a fresh sandbox, then verify it.

Re-runs the recorded code cells that succeeded (errors are skipped, side-effect cells
follow a policy), then checks the names each cell defined against the manifests the
recorder stored. Crash recovery, ``resume`` and ``continue`` all use this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nbformat import NotebookNode

import kernelagent.manifest as manifests
from kernelagent.notebook.cell_policy import is_side_effect
from kernelagent.replay.replay import (
    AskSideEffect,
    SideEffectPolicy,
    _allow_side_effect,
    code_cells,
    recorded_status,
)
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.warm_up import warm_up_as_recorded

RESTORABLE_STATUSES = {"ok"}


@dataclass
class RestoreReport:
    ran: list[int] = field(default_factory=list)
    """1-based code-cell numbers re-run."""
    skipped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    """Cells that succeeded when recorded but failed now."""
    check: manifests.ManifestCheck | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and (self.check is None or self.check.ok)

    def summary(self) -> str:
        """One paragraph for a person or the model."""
        parts = [f"re-ran {len(self.ran)} recorded cells in {self.seconds:.1f}s"]
        if self.skipped:
            parts.append(
                f"skipped {len(self.skipped)} ("
                + ", ".join(f"#{n}: {why}" for n, why in sorted(self.skipped.items())[:5])
                + ")"
            )
        if self.failed:
            parts.append(
                "failed now: "
                + ", ".join(f"#{n}: {why}" for n, why in sorted(self.failed.items())[:5])
            )
        if self.check is not None:
            if self.check.ok:
                parts.append(f"verified {len(self.check.matched)} variables")
            else:
                problems = [f"{name}: {why}" for name, why in self.check.mismatched.items()]
                problems += [f"{name}: missing" for name in self.check.missing]
                parts.append("variables that differ from the recording: " + "; ".join(problems[:8]))
        return "; ".join(parts) + "."


async def restore_state(
    notebook: NotebookNode,
    sandbox: Sandbox,
    *,
    until: int | None = None,
    side_effects: SideEffectPolicy = "skip",
    ask: AskSideEffect | None = None,
    timeout: float = 300.0,
    verify: bool = True,
) -> RestoreReport:
    """Re-run the successful code cells 1..``until`` in ``sandbox`` and verify the result."""
    started = time.perf_counter()
    report = RestoreReport()
    await warm_up_as_recorded(sandbox, notebook.metadata)  # the kernel's recorded starting state
    cells = code_cells(notebook)[: until if until is not None else None]
    expected: list[dict[str, dict[str, Any]]] = []
    for number, cell in enumerate(cells, start=1):
        status = recorded_status(cell)
        if status not in RESTORABLE_STATUSES:
            report.skipped[number] = f"recorded status {status}"
            continue
        if not cell.source.strip():
            continue
        if is_side_effect(cell) and not await _allow_side_effect(
            side_effects, ask, number, cell.source
        ):
            report.skipped[number] = "side-effect cell"
            continue
        result = await sandbox.execute(cell.source, timeout=timeout)
        report.ran.append(number)
        if not result.ok:
            report.failed[number] = result.detail or _error_line(result.outputs)
            if result.status == "kernel_died":
                break
            continue
        recorded = cell.metadata.get("kernelagent", {}).get("manifest")
        if recorded is not None:
            expected.append(manifests.from_list(recorded))
    if verify and expected:
        actual = await sandbox.snapshot()
        report.check = manifests.check(manifests.fold(expected), actual)
    report.seconds = time.perf_counter() - started
    return report


def _error_line(outputs: list[dict[str, Any]]) -> str:
    for output in outputs:
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return "failed"
