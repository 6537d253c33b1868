"""Tally the recorded attempts of a finished task-benchmark run again, with today's vote.

A vote changes nothing an attempt does: attempts run independently, and the only thing
that reads the vote while they run (stopping the rest once a strict majority agrees) reads
the size of the largest agreeing group, which a tie-break does not change. So a run's
attempts can be tallied again *exactly* under a new tie-break, without running the model.

Each task's ballots are rebuilt from its notebooks (``metadata.kernelagent.attempts``, the
attempts' cells). The rebuild is checked first: tallied under the old rule (no attempt's
ignored numbers known), it must choose the attempt the run chose. A task whose rebuild does
not reproduce its recorded vote is kept as run and listed.

    python -m tests.benchmarks.retally /work/bench10/ka/results.json --out retally.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import nbformat

from kernelagent.agent.answer_kind import numbers_not_in_code
from kernelagent.agent.voting import Ballot, tally
from tests.benchmarks.scoring import score_task
from tests.benchmarks.tasks.suite import BY_ID, split_of


@dataclasses.dataclass
class Retallied:
    task: str
    split: str
    recorded: str | None
    answer: str | None
    passed_before: bool
    passed_after: bool
    note: str


def question_of(notebook: Any) -> str:
    """The instruction the session was given: its first cell, "**Task:**" and all after."""
    first = notebook.cells[0].source if notebook.cells else ""
    return first.split("**Task:**", 1)[-1].strip()


def rebuild_ballots(session_notebook: Path) -> tuple[list[Ballot], int | None, str]:
    """The ballots of a recorded session, the attempt its vote chose, and its question."""
    session = nbformat.read(session_notebook, as_version=4)
    recorded = session.metadata.get("kernelagent", {})
    question = question_of(session)
    ballots = []
    for entry in recorded.get("attempts", []):
        path = session_notebook.parent / entry["notebook"]
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        failed = sum(any(o.get("output_type") == "error" for o in c.outputs) for c in cells)
        codes = [cell.source for cell in cells]
        ballots.append(
            Ballot(
                entry["number"],
                entry["status"],
                answer=entry["answer"] if entry["status"] == "completed" else None,
                grounded=entry["grounded"],
                detail=entry.get("detail", ""),
                failed_cells=failed,
                printed=_one_line(cells[-1]) if cells and not entry["grounded"] else None,
                ignored_numbers=tuple(numbers_not_in_code(question, codes)),
            )
        )
    vote = recorded.get("vote") or {}
    return ballots, vote.get("chosen"), question


def _one_line(cell: Any) -> str | None:
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else None


def retally(result: dict[str, Any], data_dir: Path) -> Retallied:
    task = BY_ID[result["task"]]
    passed = bool(result["passed"])
    kept = Retallied(
        task.id, split_of(task.id), result["answer"], result["answer"], passed, passed, ""
    )
    notebook = Path(result["notebook"]) if result.get("notebook") else None
    if notebook is None or not notebook.exists():
        return dataclasses.replace(kept, note="no notebook")
    ballots, chosen, question = rebuild_ballots(notebook)
    if not ballots:
        return dataclasses.replace(kept, note="one attempt")
    old_rule = [dataclasses.replace(ballot, ignored_numbers=()) for ballot in ballots]
    if tally(old_rule, len(ballots), question).chosen != chosen:
        return dataclasses.replace(kept, note="rebuild does not reproduce the recorded vote")
    now = tally(ballots, len(ballots), question)
    if now.chosen == chosen:
        return kept
    scored = score_task(task, now.answer, task.expected(data_dir), notebook.parent / "workspace")
    return dataclasses.replace(
        kept, answer=now.answer, passed_after=scored.passed, note=f"now: {now.summary}"
    )


def render(rows: list[Retallied], source: Path) -> str:
    lines = [
        "| task | split | answer as run | pass | answer re-tallied | pass | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.answer == row.recorded and not row.note.startswith("rebuild"):
            continue
        lines.append(
            f"| {row.task} | {row.split} | {row.recorded} | {_yes(row.passed_before)} | "
            f"{row.answer} | {_yes(row.passed_after)} | {row.note} |"
        )
    totals = []
    for split in ("tuning", "held-out"):
        part = [row for row in rows if row.split == split]
        before, after = sum(r.passed_before for r in part), sum(r.passed_after for r in part)
        totals.append(f"{split}: {before}/{len(part)} as run, {after}/{len(part)} re-tallied")
    before, after = sum(r.passed_before for r in rows), sum(r.passed_after for r in rows)
    totals.append(f"all: {before}/{len(rows)} as run, {after}/{len(rows)} re-tallied")
    checked = sum(not r.note.startswith("rebuild") for r in rows)
    return "\n".join(
        [
            f"Re-tallied from `{source}` ({checked} of {len(rows)} tasks' votes rebuilt exactly); "
            "only the tasks whose answer changes are listed.",
            "",
            *lines,
            "",
            "; ".join(totals) + ".",
        ]
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results.json (under its --scratch)")
    parser.add_argument("--out", type=Path, help="write the table here (default: print it)")
    args = parser.parse_args(argv)
    raw = json.loads(args.results.read_text())
    data_dir = args.results.parent / "data"
    rows = [retally(r, data_dir) for r in raw["results"] if r["agent"] == "kernelagent"]
    table = render(rows, args.results)
    if args.out:
        args.out.write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
