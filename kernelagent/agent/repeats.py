"""Code the loop does not run again, and how much hotter the model samples after that.

Two kinds of repeat are refused, recorded as ``action_skipped`` events instead of cells:

- code equal to a cell that **failed** on a kernel that has not changed since (see
  ``hints.CellMemory``): it would fail the same way;
- code equal to the cell that **just ran** successfully, with nothing run or restarted in
  between: it would print the same. A small model at temperature 0 re-sends its reply
  unchanged (code and the same guessed answer) when the answer is sent back; the model
  reads that cell's output again instead, and an answer in the same reply is judged
  against it.

Each turn whose only code was refused raises the next turn's temperature one rung of
``LoopLimits.retry_temperatures`` (e.g. 0 -> 0.7 -> 1.0); a turn that runs code resets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kernelagent.agent import prompts
from kernelagent.agent.answers import RanCell
from kernelagent.agent.hints import CellMemory, FailedCell, code_key
from kernelagent.events import ActionSkipped, code_sha256
from kernelagent.literals import CellKind

RERUN_OUTPUT_CHARS = 1_500


@dataclass(frozen=True)
class JustRan:
    cell_id: str
    cell: RanCell
    key: str
    state: int
    """``CellMemory.state`` after the cell ran: any later change makes a re-run legitimate."""


class RepeatGuard:
    def __init__(
        self, memory: CellMemory, ladder: tuple[float, ...], base_temperature: float | None
    ) -> None:
        self.memory = memory
        self.ladder = ladder
        self.base_temperature = base_temperature
        self.in_a_row = 0
        """Consecutive turns whose code was all refused."""
        self.last_success: JustRan | None = None

    def failed_before(self, kind: str, source: str) -> FailedCell | None:
        return self.memory.repeat_of(kind, source)

    def just_ran(self, kind: str, source: str) -> JustRan | None:
        last = self.last_success
        if kind != "python" or last is None or last.state != self.memory.state:
            return None
        return last if code_key(kind, source) == last.key else None

    def cell_ran(self, kind: str, cell_id: str, cell: RanCell) -> None:
        """Call after every cell (with the memory already updated)."""
        self.last_success = (
            JustRan(cell_id, cell, code_key(kind, cell.code), self.memory.state)
            if cell.ok and kind == "python"
            else None
        )

    def skipped(
        self,
        call_id: str,
        kind: CellKind,
        source: str,
        cell_id: str,
        repeats: Literal["failed", "just_ran"],
        error: str,
    ) -> ActionSkipped:
        """The event that records a refused repeat (not a cell) in the notebook."""
        return ActionSkipped(
            tool_call_id=call_id,
            kind=kind,
            code=source,
            code_sha256=code_sha256(source),
            same_as_cell=cell_id,
            repeats=repeats,
            error=error,
            next_temperature=self.next_temperature(),
        )

    def end_turn(self, refused: bool, executed: bool) -> None:
        self.in_a_row = self.in_a_row + 1 if refused and not executed else 0

    def temperature(self) -> float | None:
        """This turn's temperature: the base one, raised after refused turns."""
        if self.in_a_row == 0 or not self.ladder:
            return self.base_temperature
        return self._rung(self.in_a_row - 1)

    def next_temperature(self) -> float | None:
        """The temperature of the turn after one more refusal."""
        return self._rung(self.in_a_row) if self.ladder else self.base_temperature

    def _rung(self, index: int) -> float:
        raised = self.ladder[min(index, len(self.ladder) - 1)]
        return max(raised, self.base_temperature or 0.0)

    def failure_message(self, earlier: FailedCell) -> str:
        notes = [prompts.REPEATED_FAILURE.format(number=earlier.number, error=earlier.error)]
        notes += self.memory.error_notes(earlier.error)
        if (alternating := self.memory.alternation_note()) is not None:
            notes.append(alternating)
        return "\n".join(notes)

    def rerun_message(self, last: JustRan, code_blocks: bool) -> str:
        output = last.cell.output.strip() or "(nothing)"
        if len(output) > RERUN_OUTPUT_CHARS:
            output = output[:RERUN_OUTPUT_CHARS] + "\n[... cut ...]"
        act = prompts.BEFORE_OUTPUT_ACT_BLOCKS if code_blocks else prompts.BEFORE_OUTPUT_ACT_TOOLS
        return prompts.REPEATED_SUCCESS.format(number=last.cell.number, output=output, act=act)
