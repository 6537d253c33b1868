"""Tallying a finished benchmark run's recorded attempts again (``tests.benchmarks.retally``):
a session with three contested attempts, written as the attempts runner writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.benchmarks.retally import render, retally
from tests.benchmarks.tasks.datasets import generate
from tests.benchmarks.tasks.suite import BY_ID

TASK = BY_ID["completed_over_200_total"]


def attempt_cells(code: str, printed: str) -> list[Any]:
    cell = new_code_cell(code, outputs=[new_output("stream", name="stdout", text=printed + "\n")])
    return [new_markdown_cell(f"**Task:**\n\n{TASK.prompt()}"), cell]


def write_session(directory: Path, chosen: int) -> Path:
    """Attempt 1 left "greater than 200" in a comment; attempt 2 filtered by it; attempt 3
    answered something else again."""
    codes = {
        1: "df = df[df.status == 'completed']  # greater than 200\nprint(df.amount.sum())",
        2: "df = df[(df.status == 'completed') & (df.amount > 200)]\nprint(df.amount.sum())",
        3: "print(round(df[df.amount > 200].amount.mean(), 2))",
    }
    answers = {1: "157891.43", 2: "65691.88", 3: "321.07"}
    session = directory / "task.ipynb"
    entries = []
    for number in (1, 2, 3):
        path = directory / "task.attempts" / f"attempt-{number}.ipynb"
        if number == chosen:
            path = session
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(new_notebook(cells=attempt_cells(codes[number], answers[number])), path)
        entries.append(
            {
                "number": number,
                "status": "completed",
                "answer": answers[number],
                "grounded": True,
                "detail": "",
                "notebook": str(path.relative_to(directory)),
            }
        )
    notebook = nbformat.read(session, as_version=4)
    notebook.metadata["kernelagent"] = {"attempts": entries, "vote": {"chosen": chosen}}
    nbformat.write(notebook, session)
    return session


def result_row(session: Path, answer: str) -> dict[str, Any]:
    return {"task": TASK.id, "answer": answer, "passed": False, "notebook": str(session)}


def test_a_tie_is_tallied_again_under_todays_rule(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(data)
    session = write_session(tmp_path / "run", chosen=1)
    row = retally(result_row(session, "157891.43"), data)
    assert (row.recorded, row.answer) == ("157891.43", "65691.88")
    assert (row.passed_before, row.passed_after) == (False, True)
    assert "attempt 1's does not use 200" in row.note
    table = render([row], tmp_path / "results.json")
    assert "| completed_over_200_total | tuning | 157891.43 | no | 65691.88 | yes |" in table
    assert table.endswith("all: 0/1 as run, 1/1 re-tallied.")


def test_a_rebuild_that_does_not_reproduce_the_recorded_vote_changes_nothing(
    tmp_path: Path,
) -> None:
    # the old rule would have kept attempt 1; a record that says 3 was chosen is not trusted
    session = write_session(tmp_path / "run", chosen=3)
    row = retally(result_row(session, "321.07"), tmp_path / "data")
    assert row.answer == row.recorded == "321.07"
    assert row.note == "rebuild does not reproduce the recorded vote"
