"""Trustworthy answers: failed code is not run again, answers come from executed code.

Real parts: the openai client over HTTP to the scripted server on 127.0.0.1, kernels in
the Docker sandbox, notebooks written by the recorder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

import kernelagent.api as api
from kernelagent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn

SALES = Path(__file__).parent.parent / "examples" / "sales.csv"
FAILS = "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df['city'].nunique())"
FAILS_TOO = "print(df['town'].nunique())"
WORKS = "print(df['region'].nunique())"


def config(server: ScriptedModelServer, **options: Any) -> Any:
    limits = {
        name: options.pop(name)
        for name in ("verify_answers", "temperature", "check_answers", "answer_from_output")
        if name in options
    }
    built = api.build_config(model="scripted-model", base_url=server.base_url, **options)
    built.limits.verify_answers = limits.get("verify_answers", False)
    for name, value in limits.items():
        setattr(built.limits, name, value)
    return built


async def run(
    server: ScriptedModelServer,
    tmp_path: Path,
    question: str = "How many regions are there?",
    **options: Any,
) -> tuple[api.SessionResult, Any]:
    result = await api.arun(
        question,
        data=[SALES],
        workspace=tmp_path / "ws",
        notebook=tmp_path / "session.ipynb",
        config=config(server, **options),
    )
    notebook = nbformat.read(result.notebook_path, as_version=4)
    nbformat.validate(notebook)
    return result, notebook


async def run_script(
    script: list[ScriptedTurn], tmp_path: Path, question: str, **options: Any
) -> tuple[api.SessionResult, Any, list[Any]]:
    """Run ``question`` on the scripted model; also what the model was sent, in order."""
    with ScriptedModelServer(script) as server:
        result, notebook = await run(server, tmp_path, question, **options)
        return result, notebook, server.completion_requests()


def code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def last_input(request: Any) -> str:
    """What the model read last: the newest tool output or user message of a request."""
    body = request.body
    items = body.get("input") or body.get("messages") or []
    last = items[-1]
    return json.dumps(last.get("output") or last.get("content"))


async def test_code_that_already_failed_is_not_run_again(
    docker_available: None, tmp_path: Path
) -> None:
    script = [
        ScriptedTurn.python(FAILS),
        ScriptedTurn.python(
            FAILS.replace("\n", "  # again\n", 1)
        ),  # the same code, a comment added
        ScriptedTurn.python(FAILS_TOO),
        ScriptedTurn.python(FAILS),  # flipping back to the first failure: still refused
        ScriptedTurn.python(FAILS_TOO),  # ...and to the second, a second refusal in a row
        ScriptedTurn.python(WORKS),
        ScriptedTurn.final("4"),
    ]
    with ScriptedModelServer(script) as server:
        result, notebook = await run(server, tmp_path, temperature=0.0)
        requests = server.completion_requests()
    assert result.status == "completed" and result.answer == "4"
    cells = code_cells(notebook)
    # the refused repeats are not cells: the notebook holds only what ran
    assert [cell.metadata.kernelagent.status for cell in cells] == ["error", "error", "ok"]
    skipped = notebook.metadata.kernelagent.skipped_actions
    assert [entry["same_as_cell"] for entry in skipped] == [
        cells[0].id,
        cells[0].id,
        cells[1].id,
    ]
    assert skipped[0]["error"] == "KeyError: 'city'"
    # the model was told, with what the kernel does have, and asked at a higher temperature
    refusal = last_input(requests[2])
    assert "[not run] This code is the same as cell 1" in refusal
    assert "Columns in the kernel: df: date (object), region (object)" in refusal
    assert [r.body.get("temperature") for r in requests] == [0.0, 0.0, 0.7, 0.0, 0.7, 1.0, 0.0]
    # flipping between two failures lists both
    assert "cell 1: KeyError: 'city'" in last_input(
        requests[4]
    ) and "cell 2: KeyError: 'town'" in last_input(requests[4])


async def test_a_failed_cell_runs_again_once_the_kernel_changed(
    docker_available: None, tmp_path: Path
) -> None:
    script = [
        ScriptedTurn.python("print(df.shape)"),  # NameError: nothing loaded yet
        ScriptedTurn.python("import pandas as pd\ndf = pd.read_csv('sales.csv')"),
        ScriptedTurn.python("print(df.shape)"),  # the same code, but now df exists
        ScriptedTurn.final("4"),
    ]
    with ScriptedModelServer(script) as server:
        _result, notebook = await run(server, tmp_path)
    assert [cell.metadata.kernelagent.status for cell in code_cells(notebook)] == [
        "error",
        "ok",
        "ok",
    ]
    assert "skipped_actions" not in notebook.metadata.kernelagent


async def test_only_repeats_end_the_session_with_a_clear_reason(
    docker_available: None, tmp_path: Path
) -> None:
    with ScriptedModelServer([ScriptedTurn.python(FAILS)] * 4) as server:
        result, notebook = await run(server, tmp_path)
    assert result.status == "failed"
    assert "code repeating a failed cell" in result.reason
    assert (
        len(code_cells(notebook)) == 1 and len(notebook.metadata.kernelagent.skipped_actions) == 3
    )


async def test_an_answer_line_inside_the_code_block_runs_the_code_first(
    docker_available: None, tmp_path: Path
) -> None:
    # `FINAL ANSWER:` inside the block used to be a SyntaxError, re-sent until the step limit
    reply = (
        "```python\nimport pandas as "
        "pd\nprint(pd.read_csv('sales.csv')['region'].nunique())\nFINAL ANSWER: 4\n```"
    )
    with ScriptedModelServer([ScriptedTurn.say(reply)]) as server:
        result, notebook = await run(server, tmp_path, api="code-blocks")
    assert (result.status, result.answer, result.usage.requests) == ("completed", "4", 1)
    [cell] = code_cells(notebook)
    assert "FINAL ANSWER" not in cell.source and cell.outputs[0]["text"] == "4\n"
    assert notebook.metadata.kernelagent.answer_reviews[0]["verdict"] == "accepted"


async def test_an_answer_written_before_the_output_must_match_it(
    docker_available: None, tmp_path: Path
) -> None:
    guessed = (
        "```python\nimport pandas as "
        "pd\nprint(pd.read_csv('sales.csv')['region'].nunique())\n```\nFINAL ANSWER: 5"
    )
    with ScriptedModelServer(
        [ScriptedTurn.say(guessed), ScriptedTurn.say("FINAL ANSWER: 4")]
    ) as server:
        result, notebook = await run(server, tmp_path, api="code-blocks")
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "4")
    sent_back = json.loads(last_input(requests[1]))
    assert (
        "Answer '5' not accepted" in sent_back and "before the code's output existed" in sent_back
    )
    assert "The code printed:\n4\n" in sent_back  # what the answer should come from
    assert "reply with only the line `FINAL ANSWER:" in sent_back
    verdicts = [review["verdict"] for review in notebook.metadata.kernelagent.answer_reviews]
    assert verdicts == ["before_output", "accepted"]


async def test_prose_after_an_error_gets_a_nudge_that_names_it(
    docker_available: None, tmp_path: Path
) -> None:
    script = [
        ScriptedTurn.python(FAILS),
        ScriptedTurn.say("Please provide the data so I can continue."),
        ScriptedTurn.python(WORKS),
        ScriptedTurn.final("4"),
    ]
    with ScriptedModelServer(script) as server:
        result, _ = await run(server, tmp_path)
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "4")
    nudge = last_input(requests[2])
    assert "Your last cell failed with: KeyError: 'city'" in nudge
    assert "do not ask for data" in nudge and "sales.csv" in nudge and "region (object)" in nudge


@pytest.mark.parametrize("api_kind", ["responses", "code-blocks"])
async def test_the_verification_turn_shows_the_code_and_output(
    docker_available: None, tmp_path: Path, api_kind: str
) -> None:
    answer = (
        ScriptedTurn.say("FINAL ANSWER: 4")
        if api_kind == "code-blocks"
        else ScriptedTurn.final("4")
    )
    run_code = (
        ScriptedTurn.say(f"```python\n{FAILS.replace('city', 'region')}\n```")
        if api_kind == "code-blocks"
        else ScriptedTurn.python(FAILS.replace("city", "region"))
    )
    with ScriptedModelServer([run_code, answer, answer]) as server:
        result, notebook = await run(server, tmp_path, api=api_kind, verify_answers=True)
        requests = server.completion_requests()
    assert (result.status, result.answer, result.usage.requests) == ("completed", "4", 3)
    check = last_input(requests[2])
    assert "[check before the answer is accepted] Question: How many regions are there?" in check
    assert "print(df['region'].nunique())" in check and "Your answer: 4" in check
    assert ("FINAL ANSWER: 4` again" in check) == (api_kind == "code-blocks")
    verdicts = [review["verdict"] for review in notebook.metadata.kernelagent.answer_reviews]
    assert verdicts == ["verify", "accepted"]


async def test_verification_can_fix_the_answer(docker_available: None, tmp_path: Path) -> None:
    script = [
        ScriptedTurn.python(
            "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df['units'].sum())"
        ),
        ScriptedTurn.final("placeholder"),
        ScriptedTurn.python(WORKS),
        ScriptedTurn.final("4"),
    ]
    with ScriptedModelServer(script) as server:
        result, notebook = await run(server, tmp_path, verify_answers=True, check_answers=False)
    assert (result.status, result.answer) == ("completed", "4")
    assert [cell.metadata.kernelagent.status for cell in code_cells(notebook)] == ["ok", "ok"]


async def test_review_turns_do_not_count_against_the_step_limit(
    docker_available: None, tmp_path: Path
) -> None:
    """Two steps allowed: code, answer; the check's and the verification's turns are extra."""
    script = [
        ScriptedTurn.python(FAILS.replace("city", "region")),
        ScriptedTurn.final("four"),  # not in any output: sent back once (check_answers)
        ScriptedTurn.final("4"),  # then the verification turn
        ScriptedTurn.final("4"),
    ]
    with ScriptedModelServer(script) as server:
        result, notebook = await run(
            server, tmp_path, max_steps=2, verify_answers=True, check_answers=True
        )
    assert (result.status, result.answer, result.usage.requests) == ("completed", "4", 4)
    verdicts = [review["verdict"] for review in notebook.metadata.kernelagent.answer_reviews]
    assert verdicts == ["not_shown", "verify", "accepted"]


async def test_the_step_limit_still_holds_without_reviews(
    docker_available: None, tmp_path: Path
) -> None:
    script = [
        ScriptedTurn.python(WORKS.replace("region", f"region'][{n}:]['region")) for n in range(4)
    ]
    with ScriptedModelServer(script) as server:
        result, _ = await run(server, tmp_path, max_steps=2)
    assert result.status == "paused" and result.usage.requests == 2
    assert "step limit (2)" in (result.reason or "")


async def test_the_cell_that_just_ran_is_not_run_again(
    docker_available: None, tmp_path: Path
) -> None:
    """A small model at temperature 0 re-sends its whole reply (code and a guessed answer)
    when the answer is sent back: the code is not run again; the model reads its output."""
    guessed = ScriptedTurn(
        tool_calls=[
            ScriptedToolCall(name="python", arguments={"code": FAILS.replace("city", "region")}),
            ScriptedToolCall(name="final_answer", arguments={"answer": "5"}),
        ]
    )
    with ScriptedModelServer([guessed, guessed, ScriptedTurn.final("4")]) as server:
        result, notebook = await run(server, tmp_path, temperature=0.0, check_answers=False)
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "4")
    [cell] = code_cells(notebook)  # ran once
    [skipped] = notebook.metadata.kernelagent.skipped_actions
    assert (skipped["repeats"], skipped["same_as_cell"], skipped["error"]) == (
        "just_ran",
        cell.id,
        "",
    )
    refusal = json.dumps(requests[2].body)
    assert "[not run] This code is the same as cell 1, which just ran and printed:\\n4" in refusal
    # the answer that rode along is judged against that output, so it is not accepted
    verdicts = [review["verdict"] for review in notebook.metadata.kernelagent.answer_reviews]
    assert verdicts == ["before_output", "before_output", "accepted"]
    assert [r.body.get("temperature") for r in requests] == [0.0, 0.0, 0.7]


async def test_the_same_code_runs_again_once_something_else_ran(
    docker_available: None, tmp_path: Path
) -> None:
    counts = FAILS.replace("city", "region")
    script = [
        ScriptedTurn.python(counts),
        ScriptedTurn.shell("ls"),  # may have changed the files the code reads
        ScriptedTurn.python(counts),
        ScriptedTurn.final("4"),
    ]
    with ScriptedModelServer(script) as server:
        result, notebook = await run(server, tmp_path)
    assert result.status == "completed"
    assert [cell.metadata.kernelagent.status for cell in code_cells(notebook)] == ["ok"] * 3
    assert not notebook.metadata.kernelagent.get("skipped_actions")


async def test_a_guess_sent_back_is_not_accepted_when_it_comes_again(
    docker_available: None, tmp_path: Path
) -> None:
    guessed = (
        "```python\nimport pandas as pd\nprint(pd.read_csv('sales.csv')['region'].nunique())\n```"
        "\nFINAL ANSWER: 5"
    )
    script = [ScriptedTurn.say(guessed)] + [ScriptedTurn.say("FINAL ANSWER: 5")] * 2
    script.append(ScriptedTurn.say("FINAL ANSWER: 4"))
    with ScriptedModelServer(script) as server:
        result, notebook = await run(
            server, tmp_path, api="code-blocks", temperature=0.0, check_answers=False
        )
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "4")
    reviews = notebook.metadata.kernelagent.answer_reviews
    assert [(r["verdict"], r["answer"]) for r in reviews] == [
        ("before_output", "5"),
        ("not_shown", "5"),
        ("not_shown", "5"),
        ("accepted", "4"),
    ]
    again = json.loads(last_input(requests[2]))
    assert "it was sent back before, and it still does not appear" in again
    assert "The newest output:\n4\n" in again
    assert [r.body.get("temperature") for r in requests] == [0.0, 0.0, 0.7, 1.0]


def stuck_on_guess(code: str, guess: str) -> list[ScriptedTurn]:
    """Code, with a guess written before its output, then only that guess, again and again."""
    first = ScriptedTurn.say(f"```python\n{code}\n```\nFINAL ANSWER: {guess}")
    return [first] + [ScriptedTurn.say(f"FINAL ANSWER: {guess}")] * 8


async def test_a_model_stuck_on_a_guess_ends_with_the_value_its_code_printed(
    docker_available: None, tmp_path: Path
) -> None:
    """A guess that no output shows, sent back and sent again, is a turn with no usable
    action; after three of them the session ends, before the step limit, with the one value
    its code printed, and says where the answer came from."""
    code = "import pandas as pd\nprint(pd.read_csv('sales.csv')['region'].nunique())"
    with ScriptedModelServer(stuck_on_guess(code, "5")) as server:
        result, notebook = await run(
            server, tmp_path, api="code-blocks", max_steps=8, check_answers=False
        )
        requests = server.completion_requests()
    assert (result.status, result.answer, len(requests)) == ("completed", "4", 4)
    assert "taken from what cell 1 printed; the model's answer '5' is in no output" in (
        result.reason or ""
    )
    reviews = notebook.metadata.kernelagent.answer_reviews
    assert [(r["verdict"], r["answer"]) for r in reviews] == [
        ("before_output", "5"),
        ("not_shown", "5"),
        ("not_shown", "5"),
        ("not_shown", "5"),
        ("from_output", "4"),
    ]
    again = json.loads(last_input(requests[2]))
    assert "Your answer differs from what your code printed" in again
    assert "The newest output:\n4\n" in again
    assert [cell.metadata.kernelagent.status for cell in code_cells(notebook)] == ["ok"]


@pytest.mark.parametrize(
    ("code", "answer_from_output"),
    [
        # a table, not one value: nothing to take the answer from
        ("import pandas as pd\nprint(pd.read_csv('sales.csv').head())", True),
        ("import pandas as pd\nprint(pd.read_csv('sales.csv')['region'].nunique())", False),
    ],
    ids=["output-is-a-table", "turned-off"],
)
async def test_a_model_stuck_on_a_guess_fails_when_no_printed_value_can_answer(
    docker_available: None, tmp_path: Path, code: str, answer_from_output: bool
) -> None:
    with ScriptedModelServer(stuck_on_guess(code, "987654")) as server:  # in no output
        result, notebook = await run(
            server,
            tmp_path,
            api="code-blocks",
            max_steps=8,
            check_answers=False,
            answer_from_output=answer_from_output,
        )
    assert (result.status, result.answer) == ("failed", None)
    assert "an answer sent back again that no output shows" in (result.reason or "")
    verdicts = [r["verdict"] for r in notebook.metadata.kernelagent.answer_reviews]
    assert verdicts == ["before_output", "not_shown", "not_shown", "not_shown"]


async def test_a_model_that_only_resends_working_code_pauses_at_the_step_limit(
    docker_available: None, tmp_path: Path
) -> None:
    """Unlike a repeated failure, re-sent working code is not an unusable turn: the session
    is not failed, and it stops at the step limit with its work kept."""
    counts = ScriptedTurn.python(FAILS.replace("city", "region"))
    with ScriptedModelServer([counts] * 5) as server:
        result, notebook = await run(server, tmp_path, max_steps=5)
    assert result.status == "paused" and "step limit (5)" in (result.reason or "")
    assert len(code_cells(notebook)) == 1
    assert [s["repeats"] for s in notebook.metadata.kernelagent.skipped_actions] == ["just_ran"] * 4
