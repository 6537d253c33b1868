"""Parallel attempts that vote: each in its own Docker sandbox, each recorded as a branch
notebook, the scripted server on 127.0.0.1 answering them over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

import kernelagent.api as api
from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.events import CellStarted, Event
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

SALES = Path(__file__).parent.parent / "examples" / "sales.csv"


class Voters:
    """A scripted model for concurrent attempts: it tells them apart by the temperature
    they sample at and by what their own conversation holds, never by arrival order."""

    def __init__(self, value_for: Any, code: str = "") -> None:
        self.value_for = value_for
        """(temperature, how many attempts at that temperature began before) -> its value."""
        self.code = code or "open('result.txt', 'w').write('{value}')\nprint({value})"
        self.begun: dict[Any, int] = {}

    def __call__(self, body: dict[str, Any]) -> ScriptedTurn:
        messages = body["messages"]
        content = messages[-1].get("content")
        last = content if isinstance(content, str) else json.dumps(content)
        if len(messages) == 2:  # system + task: a new attempt
            temperature = body.get("temperature")
            value = self.value_for(temperature, self.begun.get(temperature, 0))
            self.begun[temperature] = self.begun.get(temperature, 0) + 1
            return ScriptedTurn.python(self.code.format(value=value))
        if "[check before the answer is accepted]" in last:
            return ScriptedTurn.final(re.search(r"Your answer: (.+)", last).group(1).strip())
        printed = re.findall(r"^-?\d+$", last, re.MULTILINE)  # a line the code printed
        return ScriptedTurn.final(printed[0] if printed else "nothing")


def config(server: ScriptedModelServer, attempts: int, **options: Any) -> Any:
    built = api.build_config(
        model="scripted-model", api="chat", base_url=server.base_url, attempts=attempts
    )
    for name, value in options.items():
        setattr(built, name, value)
    return built


async def run(
    server: ScriptedModelServer, tmp_path: Path, attempts: int = 3, **options: Any
) -> api.SessionResult:
    return await api.arun(
        "How many regions are there?",
        data=[SALES],
        workspace=tmp_path / "ws",
        notebook=tmp_path / "session.ipynb",
        config=config(server, attempts, **options),
    )


def read(path: Path) -> Any:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


def printed(notebook: Any) -> list[str]:
    return [
        output.get("text", "").strip()
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]


async def test_the_majority_wins_and_the_session_keeps_that_attempt(
    docker_available: None, tmp_path: Path
) -> None:
    # attempt 1 (the server's default temperature) computes 40, attempts 2 and 3 (0.7) compute 42
    voters = Voters(lambda temperature, _: 40 if temperature is None else 42)
    with ScriptedModelServer(voters) as server:
        result = await run(server, tmp_path)
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "42")
    assert result.reason == "2 of 3 attempts agree on '42'. attempt 1 answered '40'."
    assert result.usage.requests == len(requests) == 9  # code, answer, verification: three each
    assert sorted(str(r.body.get("temperature")) for r in requests) == ["0.7"] * 6 + ["None"] * 3

    session = read(result.notebook_path)
    info = session.metadata.kernelagent
    vote = info.vote
    assert vote.chosen in (2, 3) and sorted(vote.agreeing) == [2, 3] and vote.majority
    # the session notebook is the chosen attempt's work, under the session's id
    assert printed(session) == ["42"]
    assert info.session_id == result.session_id and info.adopted_from.attempt == vote.chosen
    assert info.conversation.conversation["items"], "the chosen attempt's conversation carries on"
    assert [cell.source for cell in session.cells[-2:]][1] == "**Answer:** 42"
    assert "**Vote:** 2 of 3 attempts agree on '42'" in session.cells[-2].source
    assert "[attempt 1](session.attempts/attempt-1.ipynb)" in session.cells[-2].source
    roles = [cell.metadata.get("kernelagent", {}).get("role") for cell in session.cells]
    assert roles.count("answer") == 1, "the answer is recorded once, after the vote"
    # every attempt's notebook is valid, linked from the session and pointing back to it
    assert [entry["number"] for entry in info.attempts] == [1, 2, 3]
    for entry in info.attempts:
        branch = read(tmp_path / entry["notebook"])
        assert branch.metadata.kernelagent.branch_of == result.session_id
        assert printed(branch) == [str(40 if entry["number"] == 1 else 42)]
        assert entry["grounded"] and entry["answer"] == printed(branch)[0]
    # the chosen attempt's workspace changes are the session's
    assert (result.workspace / "result.txt").read_text() == "42"
    assert vote.workspace_kept == ["result.txt"]
    assert (result.workspace / "sales.csv").read_bytes() == SALES.read_bytes()
    record = SessionStore().get(result.session_id)
    assert (record.status, record.notebook) == ("completed", result.notebook_path)
    assert record.input_tokens == result.usage.input_tokens


async def test_once_a_majority_agrees_the_remaining_attempts_do_not_run(
    docker_available: None, tmp_path: Path
) -> None:
    with ScriptedModelServer(Voters(lambda *_: 42)) as server:
        result = await run(server, tmp_path, parallel_attempts=1)
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "42")
    assert (
        result.reason
        == "2 of 3 attempts agree on '42'. 1 attempt was not needed: a majority had agreed."
    )
    assert len(requests) == 6
    assert not (tmp_path / "session.attempts" / "attempt-3.ipynb").exists()
    info = read(result.notebook_path).metadata.kernelagent
    assert info.vote.chosen == 1 and [a["status"] for a in info.attempts] == [
        "completed",
        "completed",
        "stopped",
    ]


async def test_disagreement_with_no_majority_is_reported(
    docker_available: None, tmp_path: Path
) -> None:
    # attempt 1 computes 1; the two others 2 and 3, whichever begins first
    voters = Voters(lambda temperature, begun: 1 if temperature is None else 2 + begun)
    with ScriptedModelServer(voters) as server:
        result = await run(server, tmp_path)
    assert (result.status, result.answer) == ("completed", "1")
    assert result.reason.startswith(
        "No majority: 1 of 3 attempts agree on '1'; the session keeps it as the earliest."
    )
    assert re.search(
        r"attempt [23] answered '[23]'; attempt [23] answered '[23]'\.$", result.reason
    )
    assert "'2'" in result.reason and "'3'" in result.reason
    assert not read(result.notebook_path).metadata.kernelagent.vote.majority


async def test_a_tie_goes_to_the_attempt_whose_code_used_the_questions_number(
    docker_available: None, tmp_path: Path
) -> None:
    # attempt 1 and one other leave "greater than 5" in a comment; one attempt filters by it
    programs = {
        (None, 0): "values = [3, 6, 9]\nprint(len(values))  # greater than 5",
        (0.7, 0): "print(sum(1 for value in [3, 6, 9] if value > 5))",
        (0.7, 1): "values = [3, 6, 9]  # greater than 5\nprint(max(values) - 1)",
    }
    voters = Voters(lambda temperature, begun: programs[(temperature, begun)], code="{value}")
    with ScriptedModelServer(voters) as server:
        result = await api.arun(
            "How many of the values 3, 6 and 9 are greater than 5?",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "session.ipynb",
            config=config(server, 3),
        )
    assert (result.status, result.answer) == ("completed", "2")
    assert "its code uses every number of the question, and attempt 1's does not use 5" in (
        result.reason
    )
    recorded = read(result.notebook_path).metadata.kernelagent
    assert recorded.vote["chosen"] != 1
    weighed = {entry["answer"]: entry["ignored_numbers"] for entry in recorded.attempts}
    assert weighed == {"3": ["5"], "2": [], "8": ["5"]}


class StuckGuesser(Voters):
    """Attempt 1 computes 40; attempts 2 and 3 compute 42, but the one that begins second
    then answers 7, never what its code printed (without --check-answers, accepted
    ungrounded)."""

    def __init__(self) -> None:
        code = "# attempt at {value}\nprint(42 if '{value}' != '40' else 40)"
        super().__init__(lambda temperature, begun: 40 if temperature is None else 42 + begun, code)

    def __call__(self, body: dict[str, Any]) -> ScriptedTurn:
        if len(body["messages"]) > 2 and "# attempt at 43" in json.dumps(body["messages"]):
            return ScriptedTurn.final("7")
        return super().__call__(body)


async def test_what_a_stuck_attempts_code_printed_counts_for_the_answer_it_agrees_with(
    docker_available: None, tmp_path: Path
) -> None:
    with ScriptedModelServer(StuckGuesser()) as server:
        result = await run(server, tmp_path)
    assert (result.status, result.answer) == ("completed", "42")
    assert result.reason.startswith("2 of 3 attempts agree on '42' (attempt ")
    assert "by what its code printed, not by a stated answer)." in result.reason
    attempts = read(result.notebook_path).metadata.kernelagent.attempts
    stuck = [entry for entry in attempts if entry["answer"] == "7"]
    assert len(stuck) == 1 and not stuck[0]["grounded"], attempts


async def test_attempts_that_all_fail_report_each_last_error(
    docker_available: None, tmp_path: Path
) -> None:
    failing = "import pandas as pd\nprint(pd.read_csv('sales.csv')['city'].nunique())"
    with ScriptedModelServer(lambda body: ScriptedTurn.python(failing)) as server:
        result = await run(server, tmp_path)
    assert result.status == "failed" and result.answer is None
    assert result.reason.startswith("No attempt answered: attempt 1: failed (")
    assert result.reason.count("last error: KeyError: 'city'") == 3
    assert SessionStore().get(result.session_id).status == "failed"


async def test_ctrl_c_stops_every_attempt_and_leaves_every_notebook_valid(
    docker_available: None, tmp_path: Path
) -> None:
    started: list[Event] = []
    all_running = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, CellStarted):
            started.append(event)
            if len(started) == 3:
                all_running.set()

    sleeper = Voters(lambda *_: 0, code="import time\ntime.sleep(120)\nprint({value})")
    with ScriptedModelServer(sleeper) as server:
        runner = asyncio.create_task(
            api.arun(
                "How many regions are there?",
                data=[SALES],
                workspace=tmp_path / "ws",
                notebook=tmp_path / "session.ipynb",
                config=config(server, 3),
                on_event=on_event,
            )
        )
        await asyncio.wait_for(all_running.wait(), timeout=120)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert sorted(event.attempt or 1 for event in started) == [1, 2, 3]
    notebooks = [
        tmp_path / "session.ipynb",
        *sorted((tmp_path / "session.attempts").glob("attempt-*.ipynb")),
    ]
    assert len(notebooks) == 3
    for path in notebooks:
        [cell] = [c for c in read(path).cells if c.cell_type == "code"]
        assert cell.metadata.kernelagent.status == "interrupted"
    session_id = read(notebooks[0]).metadata.kernelagent.session_id
    assert SessionStore().get(session_id).status == "interrupted"


async def test_sessions_that_need_approval_run_one_attempt_and_say_why(
    docker_available: None, tmp_path: Path
) -> None:
    with ScriptedModelServer(Voters(lambda *_: 4)) as server:
        result = await run(server, tmp_path, approval=ApprovalPolicy(mode="shell"))
        requests = server.completion_requests()
    assert (result.status, result.answer) == ("completed", "4")
    assert len(requests) == 3
    notes = [
        cell.source for cell in read(result.notebook_path).cells if cell.cell_type == "markdown"
    ]
    assert any(
        "running one attempt instead of 3: actions of this session need approval" in note
        for note in notes
    )


async def test_on_a_llama_server_each_attempt_keeps_one_decoding_slot(
    docker_available: None, tmp_path: Path
) -> None:
    # three attempts on a server with two slots: two at a time, each pinned to a free slot
    # (llama-server's id_slot), so its prompt stays cached there; replies are capped
    voters = Voters(lambda temperature, begun: 40 if temperature is None else 41 + begun)
    with ScriptedModelServer(voters) as server:
        result = await run(server, tmp_path, decoding_slots=2, max_reply_tokens=300)
        requests = server.completion_requests()
    assert result.status == "completed" or "no majority" in result.reason
    slots_by_attempt: dict[str, set[int]] = {}
    for request in requests:
        assert request.body["max_completion_tokens"] == 300
        # the attempt's own code (the system prompt may recall an earlier session's)
        code = re.search(r"print\((\d+)\)", json.dumps(request.body["messages"][1:]))
        if code is not None:
            slots_by_attempt.setdefault(code.group(1), set()).add(request.body["id_slot"])
    assert sorted(slots_by_attempt) == ["40", "41", "42"]
    assert all(len(slots) == 1 for slots in slots_by_attempt.values())
    assert set().union(*slots_by_attempt.values()) == {0, 1}
