"""What the model reads of a failed cell, from tracebacks IPython really formats."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from kernelagent.agent.feedback import build_feedback, clip
from kernelagent.execution.result import ExecutionResult


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    shell = InteractiveShell.instance(colors="Linux")
    return shell


def error_output(shell: InteractiveShell, code: str) -> dict:
    """The error output ipykernel would send for ``code`` (traceback lines with ANSI colours)."""
    captured: list[dict] = []

    def capture(etype, evalue, stb):  # type: ignore[no-untyped-def]
        captured.append(
            {
                "output_type": "error",
                "ename": etype.__name__,
                "evalue": str(evalue),
                "traceback": stb,
            }
        )

    shell._showtraceback = capture  # what ipykernel overrides to send the traceback
    shell.run_cell(code, store_history=True)
    assert captured, f"{code!r} did not fail"
    return captured[0]


def feedback_for(output: dict) -> str:
    result = ExecutionResult(status="error", outputs=[output], started_at=0.0, finished_at=0.5)
    return build_feedback(result, images_as_input=False).text


def test_a_library_error_shows_the_cells_failing_line_and_where_it_was_raised(
    shell: InteractiveShell,
) -> None:
    text = feedback_for(error_output(shell, "import json\nvalue = 1\njson.loads('{bad json')"))
    lines = text.splitlines()
    assert lines[0] == "[error in 0.5s]"
    assert lines[1].startswith("Error: JSONDecodeError: Expecting property name")
    assert "Cell In[" in lines[2] and "line 3" in lines[2]
    assert any(line.startswith("---->") and "json.loads('{bad json')" in line for line in lines)
    assert "value = 1" in text  # context before the failing line
    assert "frames in library code" in text or "frame in library code" in text
    assert "\x1b[" not in text
    assert text.count("json/decoder.py") == 1  # only the frame that raised, not every library frame


def test_an_error_in_a_function_from_an_earlier_cell_keeps_both_cell_frames(
    shell: InteractiveShell,
) -> None:
    shell.run_cell("def ratio(a, b):\n    return a / b", store_history=True)
    text = feedback_for(error_output(shell, "ratio(1, 0)"))
    assert text.splitlines()[1] == "Error: ZeroDivisionError: division by zero"
    assert text.count("Cell In[") == 2
    assert "return a / b" in text and "ratio(1, 0)" in text


def test_a_syntax_error_shows_the_line_and_the_caret(shell: InteractiveShell) -> None:
    text = feedback_for(error_output(shell, "total = (1 +\nprint(total"))
    assert "Error: SyntaxError" in text
    assert "^" in text


def test_feedback_is_clipped_with_the_cut_marked() -> None:
    assert clip("a" * 10, 4, 3) == "aaaa\n[... 3 characters cut ...]\naaa"
    assert clip("short", 4, 3) == "short"
