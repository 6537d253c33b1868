"""Memory across sessions, each session a separate `kernelagent` process: the real openai
client against the scripted server (which records every request), real Docker sandboxes.

Session 1 reads sales.csv and answers; it writes a dataset card and its answer as a
finding without any model call. Session 2 on the same data sees both in its first
request; a session on unrelated data does not; after `forget` the finding is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest

import kernelagent.api as api
from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.postgres_fixtures import PostgresServer

SALES = Path(__file__).parent.parent / "examples" / "sales.csv"
READ = "import pandas as pd\ndf = pd.read_csv('sales.csv', parse_dates=['date'])\ndf.dtypes"


def cli(home: Path, *args: str, learn: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={
            **os.environ,
            "KERNELAGENT_HOME": str(home),
            "KERNELAGENT_USER": "tester",
            "KERNELAGENT_LEARN": "1" if learn else "0",
        },
    )


def run_session(
    home: Path, server: ScriptedModelServer, task: str, data: Path, *extra: str, learn: bool = False
) -> tuple[dict[str, Any], list[Any]]:
    """Run one session in its own process; its summary and the model requests it made."""
    before = len(server.completion_requests())
    done = cli(
        home,
        "run",
        task,
        "--data",
        str(data),
        "--base-url",
        server.base_url,
        "--json",
        *extra,
        learn=learn,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), server.completion_requests()[before:]


def memories(home: Path) -> list[dict[str, Any]]:
    listed = cli(home, "memory", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def answer(text: str) -> list[ScriptedTurn]:
    """A cell that runs (the answer needs evidence), then the answer."""
    return [
        ScriptedTurn.python("print(len(open(sorted(__import__('os').listdir())[0]).read()))"),
        ScriptedTurn.final(text),
    ]


@pytest.fixture(scope="module")
def weather(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weather") / "weather.csv"
    path.write_text("day,temp_f\nmon,61\ntue,64\n")
    return path


def test_what_session_one_learned_is_in_session_two(
    docker_available: None, tmp_path: Path, weather: Path
) -> None:
    home = tmp_path / "home"
    with ScriptedModelServer([]) as server:
        server.add_turns(
            [
                ScriptedTurn.python(READ),
                ScriptedTurn.call("remember", {"text": "the revenue figures are in cents"}),
                ScriptedTurn.final("revenue is in cents"),
            ]
        )
        first, requests = run_session(home, server, "What unit is the revenue in?", SALES)
        assert len(requests) == 3  # the card and the finding cost no model call
        offered = {tool.get("name") for tool in requests[0].body["tools"]}
        assert {"python", "remember", "recall"} <= offered
        stored = {memory["kind"]: memory for memory in memories(home)}
        card, finding, fact = stored["dataset"], stored["finding"], stored["fact"]
        assert card["dataset_name"] == "sales.csv" and len(card["dataset_sha256"]) == 64
        assert "parse_dates=['date']" in card["text"] and "date datetime64[ns]" in card["text"]
        assert "revenue float64" in card["text"] and "rows x 5 columns" in card["text"]
        assert finding["session_id"] == first["session_id"] and finding["cell_id"]
        assert finding["notebook"] == first["notebook"] and "cents" in finding["text"]
        assert fact["dataset_sha256"] == card["dataset_sha256"]
        assert fact["session_id"] == first["session_id"]
        (tool_cell,) = [
            cell
            for cell in nbformat.read(first["notebook"], as_version=4).cells
            if "host_tool" in cell.metadata.get("kernelagent", {})
        ]
        assert tool_cell.metadata.kernelagent.host_tool["metadata"]["memory_id"] == fact["id"]

        server.add_turns([ScriptedTurn.call("recall", {"query": "revenue unit"})])
        server.add_turns(answer("ok"))
        second, requests = run_session(home, server, "Total revenue per region?", SALES)
        prompt = json.dumps(requests[0].body)
        assert f"[{fact['id']}]" in prompt and "the revenue figures are in cents" in prompt
        assert f"[{finding['id']}]" in prompt and "revenue is in cents" in prompt
        assert f"[{card['id']}]" in prompt and "parse_dates" in prompt
        recalled = json.dumps(requests[1].body)  # the recall tool's result
        assert f"[{fact['id']}]" in recalled and f"from session {first['session_id']}" in recalled
        shown = nbformat.read(second["notebook"], as_version=4).metadata.kernelagent
        assert {m["id"] for m in shown["memories_shown"]} == {card["id"], finding["id"], fact["id"]}

        server.add_turns(answer("62.5"))
        _, requests = run_session(home, server, "Average temperature?", weather)
        assert finding["id"] not in json.dumps(requests[0].body)
        assert card["id"] not in json.dumps(requests[0].body)
        assert fact["id"] not in json.dumps(requests[0].body)

        assert cli(home, "memory", "forget", fact["id"]).returncode == 0
        assert cli(home, "memory", "forget", finding["id"]).returncode == 0
        learned = "- the region column has 4 values: West, East, North, South"
        server.add_turns([*answer("ok"), ScriptedTurn.say(learned)])
        fourth, requests = run_session(home, server, "Total revenue per region?", SALES, learn=True)
        prompt = json.dumps(requests[0].body)
        assert finding["id"] not in prompt and "revenue is in cents" not in prompt
        assert fact["id"] not in prompt and "in cents" not in prompt
        assert f"[{card['id']}]" in prompt  # the card was not forgotten
        assert len(requests) == 3 and "tools" not in requests[2].body  # the learned turn
        assert "what you learned" in json.dumps(requests[2].body)
        (note,) = [
            m
            for m in memories(home)
            if m["session_id"] == fourth["session_id"] and m["kind"] == "fact"
        ]
        assert note["text"] == learned and note["dataset_name"] == "sales.csv"

        server.add_turns(answer("ok"))
        _, requests = run_session(home, server, "Total revenue per region?", SALES)
        assert f"[{note['id']}]" in json.dumps(requests[0].body)

        server.add_turns(answer("ok"))
        off, requests = run_session(
            home, server, "Total revenue per region?", SALES, "--no-agent-memory"
        )
        assert card["id"] not in json.dumps(requests[0].body)
        assert "remember" not in {tool.get("name") for tool in requests[0].body["tools"]}
        recorded = nbformat.read(off["notebook"], as_version=4).metadata.kernelagent
        assert recorded["config"]["agent_memory"] is False and "memories_shown" not in recorded
    sources = {memory["session_id"] for memory in memories(home)}
    assert second["session_id"] in sources and off["session_id"] not in sources


def test_memory_on_postgres_across_processes(
    docker_available: None,
    postgres: PostgresServer,
    tmp_path: Path,
    weather: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same scenario with the session store (and so memory) on PostgreSQL: every
    `kernelagent` process finds it through $KERNELAGENT_STORE_URL."""
    url = postgres.create_database()
    monkeypatch.setenv("KERNELAGENT_STORE_URL", url)
    home = tmp_path / "home"
    with ScriptedModelServer([]) as server:
        server.add_turns(
            [
                ScriptedTurn.call("remember", {"text": "the revenue figures are in cents"}),
                *answer("cents"),
            ]
        )
        first, _ = run_session(home, server, "What unit is the revenue in?", SALES)
        (fact,) = [m for m in memories(home) if m["kind"] == "fact"]
        assert fact["session_id"] == first["session_id"] and len(fact["dataset_sha256"]) == 64

        server.add_turns(answer("ok"))
        _, requests = run_session(home, server, "Total revenue per region?", SALES)
        prompt = json.dumps(requests[0].body)
        assert f"[{fact['id']}]" in prompt and "the revenue figures are in cents" in prompt

        server.add_turns(answer("62.5"))
        _, requests = run_session(home, server, "Average temperature?", weather)
        assert fact["id"] not in json.dumps(requests[0].body)

        assert cli(home, "memory", "forget", fact["id"][:6]).returncode == 0
        server.add_turns(answer("ok"))
        _, requests = run_session(home, server, "Total revenue per region?", SALES)
        assert fact["id"] not in json.dumps(requests[0].body)
        assert "figures are in cents" not in json.dumps(requests[0].body)
    with psycopg.connect(url) as connection:
        kinds = connection.execute("SELECT kind, count(*) FROM memories GROUP BY kind").fetchall()
    assert dict(kinds) == {"dataset": 2, "finding": 4}  # a card per dataset, four answers
    assert not (home / "sessions.db").exists()  # nothing went to SQLite


def test_the_running_summary_survives_resume(docker_available: None, tmp_path: Path) -> None:
    """Session 1 (this process) outgrows its context, the model summarises the older steps,
    then the session waits for approval; `kernelagent approve` (another process) resumes it
    and its next request carries the summary, restored from the notebook."""
    marker = "SUMMARY-7f3a: printed a, b and c; nothing computed yet"
    script = [
        *(ScriptedTurn.python(f"print('{letter}' * 3000)") for letter in "abc"),
        ScriptedTurn.say(marker),  # the summary turn: no tools, text only
        ScriptedTurn.shell("echo done"),
        ScriptedTurn.final("done"),
    ]
    with ScriptedModelServer(script) as server:
        config = api.build_config(model="m", base_url=server.base_url)
        config.limits.context_chars = 8_000
        config.agent_memory = False  # no recalled memories of earlier tests in the prompt
        config.approval = ApprovalPolicy(mode="shell")
        first = api.run("Print three letters.", config=config, workspace=tmp_path / "ws")
        assert first.status == "awaiting_approval"
        summary_request = server.completion_requests()[3].body
        assert "tools" not in summary_request and "aaa" in json.dumps(summary_request)
        recorded = nbformat.read(first.notebook_path, as_version=4).metadata.kernelagent
        assert recorded["running_summary"]["text"] == marker
        approved = cli(Path(os.environ["KERNELAGENT_HOME"]), "approve", first.session_id, "--json")
        assert approved.returncode == 0, approved.stderr
        resumed = server.completion_requests()[5].body
    assert json.loads(approved.stdout)["answer"] == "done"
    assert marker in json.dumps(resumed) and "aaaa" not in json.dumps(resumed)
    cells = nbformat.read(first.notebook_path, as_version=4).cells
    code = [cell for cell in cells if cell.cell_type == "code"]
    assert len(code) == 4 and code[0].outputs[0]["text"] == "a" * 3000 + "\n"  # all kept
