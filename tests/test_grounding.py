"""Short answers are checked against what the cells printed (unit level, then in a real kernel)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kernelagent.api as api
from kernelagent.agent.grounding import prints_only_literals, ungrounded_parts
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

PRINTED = """Index(['sale_id', 'date', 'region'], dtype='object')
region
East     251,234.5521
West    1007910.5512
Name: revenue, dtype: float64
share 0.2941
best month 12
Widget 20  Gadget 11  Doohickey 3
slope -3.25
"""


@pytest.mark.parametrize(
    "answer",
    [
        "West",
        "west region",
        "1007910.55",
        "1,007,910.55",
        "1007910.6",
        "29.4%",
        "29.41",
        "0.294",
        "12",
        "Widget, Gadget, Doohickey",
        "Widget and Gadget",
        "-3.25",
        "**West**",
        "x" * 200,  # long prose is not checked
    ],
)
def test_answers_the_output_shows_pass(answer: str) -> None:
    assert ungrounded_parts(answer, PRINTED) == []


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ("October", ["October"]),
        ("197", ["197"]),
        ("1007910.56", ["1007910.56"]),  # the answer's own precision decides
        ("Widget, Gizmo", ["Gizmo"]),
        ("East, 251234.55 and 7", ["7"]),
    ],
)
def test_answers_the_output_does_not_show_are_named(answer: str, missing: list[str]) -> None:
    assert ungrounded_parts(answer, PRINTED) == missing


@pytest.mark.parametrize(
    ("code", "written"),
    [
        ("print('Boston, Oakdale, San Francisco')", True),
        ("print(42)\nprint('West', 12.5, sep=': ')", True),
        ("'West'", True),
        ("print(df['city'].value_counts())", False),
        ("total = 6 * 7\nprint(total)", False),
        ("6 * 7", False),
        ("print(f'{total}')", False),
        ("%%bash\necho West", False),  # not Python: not judged
        ("", False),
    ],
)
def test_a_cell_that_only_prints_literals_computes_nothing(code: str, written: bool) -> None:
    assert prints_only_literals(code) is written


def test_a_guess_is_sent_back_until_an_output_shows_it(tmp_path: Path) -> None:
    script = [
        ScriptedTurn.python("print(sorted(['b', 'a']))"),
        ScriptedTurn.final("October"),  # printed nowhere: sent back
        ScriptedTurn.final("October"),  # insisted: sent back again, never accepted as a guess
        ScriptedTurn.python("print('October')"),  # shows it, but only as text the model wrote
        ScriptedTurn.final("October"),  # sent back again
        ScriptedTurn.python("names = {10: 'October'}\nprint(names[10])"),
        ScriptedTurn.final("October"),  # now a computed output shows it
    ]
    with ScriptedModelServer(script) as server:
        config = api.build_config(model="m", base_url=server.base_url, sandbox="local")
        config.limits.check_answers = True
        result = api.run(
            "Which month?", config=config, workspace=tmp_path / "ws", notebook=tmp_path / "s.ipynb"
        )
        bodies = [json.dumps(r.body) for r in server.completion_requests()]
    assert result.status == "completed" and result.answer == "October"
    assert "'October' does not appear in any output" in bodies[2]
    assert "it was sent back before, and it still does not appear" in bodies[3]
    assert "only prints text written into its own code, which computes nothing" in bodies[5]
    assert "only prints text written" not in bodies[3]


def test_an_answer_the_output_shows_is_accepted_at_once(tmp_path: Path) -> None:
    script = [
        ScriptedTurn.python("total = 6 * 7\nprint(f'total: {total:.2f}')"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as server:
        config = api.build_config(model="m", base_url=server.base_url, sandbox="local")
        config.limits.check_answers = True
        result = api.run(
            "Multiply.", config=config, workspace=tmp_path / "ws", notebook=tmp_path / "s.ipynb"
        )
        assert len(server.completion_requests()) == 2
    assert result.status == "completed" and result.answer == "42"


def test_the_cli_flag_turns_the_check_on(tmp_path: Path) -> None:
    script = [ScriptedTurn.python("6 * 7"), ScriptedTurn.final("41"), ScriptedTurn.final("42")]
    with ScriptedModelServer(script) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "run",
                "Multiply.",
                "--sandbox",
                "local",
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--check-answers",
                "--json",
                "--workspace",
                str(tmp_path / "ws"),
                "--notebook",
                str(tmp_path / "s.ipynb"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ.copy(),
            check=False,
        )
        requests = len(server.completion_requests())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "42" and requests == 3


def test_an_answer_printed_as_a_literal_in_the_same_reply_is_not_evidence(tmp_path: Path) -> None:
    written = "```python\nprint('Boston, Oakdale')\n```\nFINAL ANSWER: Boston, Oakdale"
    script = [
        ScriptedTurn.say(written),
        ScriptedTurn.say("```python\ncities = ['Oakdale', 'Boston']\nprint(sorted(cities))\n```"),
        ScriptedTurn.say("FINAL ANSWER: Boston, Oakdale"),
    ]
    with ScriptedModelServer(script) as server:
        config = api.build_config(
            model="m", base_url=server.base_url, sandbox="local", api="code-blocks"
        )
        result = api.run(
            "Which cities?", config=config, workspace=tmp_path / "ws", notebook=tmp_path / "s.ipynb"
        )
        sent_back = json.dumps(server.completion_requests()[1].body)
    assert (result.status, result.answer) == ("completed", "Boston, Oakdale")
    assert "only prints text written into its own code, which computes nothing" in sent_back
