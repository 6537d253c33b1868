"""Replay, restore and continue with real kernels (Docker in CI) and the scripted model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kernelagent.api as api
from kernelagent.replay.replay import ReplayOptions, replay_notebook
from kernelagent.replay.restore import restore_state
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

SALES = Path(__file__).parent.parent / "examples" / "sales.csv"

SESSION_SCRIPT = [
    ScriptedTurn.python("import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf.shape"),
    ScriptedTurn.python(
        "totals = df.groupby('region')['revenue'].sum()\nprint(totals.round(2).to_dict())"
    ),
    ScriptedTurn.python("class Probe:\n    pass\nprint(Probe())"),  # prints a memory address
    ScriptedTurn.python(
        "import matplotlib.pyplot as plt\ntotals.plot.bar()\nplt.tight_layout()\nplt.show()"
    ),
    ScriptedTurn.python("missing_name"),  # an error, skipped by restore
    ScriptedTurn.shell("wc -l sales.csv"),
    ScriptedTurn.final("West"),
]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


@pytest.fixture
def recorded(docker_available: None, tmp_path: Path) -> Path:
    """A recorded session: ``session/analysis.ipynb`` with its inputs in ``session/workspace``."""
    directory = tmp_path / "session"
    with ScriptedModelServer(SESSION_SCRIPT) as server:
        result = api.run(
            "Revenue by region?",
            data=[SALES],
            base_url=server.base_url,
            model="scripted",
            workspace=directory / "workspace",
            notebook=directory / "analysis.ipynb",
        )
    assert result.status == "completed"
    return directory / "analysis.ipynb"


def test_replay_of_a_recorded_session_matches(recorded: Path, tmp_path: Path) -> None:
    before = recorded.read_bytes()
    done = cli("replay", str(recorded), "--json", "--out", str(tmp_path / "replayed.ipynb"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    outcomes = [cell["outcome"] for cell in report["cells"]]
    assert outcomes == ["matched"] * 6, (
        report
    )  # the Probe address and the PNG bytes differ, normalised
    assert recorded.read_bytes() == before  # the input notebook is never modified
    nbformat.validate(nbformat.read(tmp_path / "replayed.ipynb", as_version=4))


def test_an_edited_output_is_reported_as_diverged(recorded: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(recorded, as_version=4)
    cell = [c for c in notebook.cells if c.cell_type == "code"][1]
    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("West", "Wests")
    edited = recorded.with_name("edited.ipynb")
    nbformat.write(notebook, edited)
    done = cli("replay", str(edited), "--workspace", str(recorded.parent / "workspace"))
    assert done.returncode == 1
    assert "diverged" in done.stderr and "Wests" in done.stderr


def test_agent_level_replay_reproduces_the_session(recorded: Path) -> None:
    done = cli("replay", "--agent", str(recorded), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {cell["outcome"] for cell in json.loads(done.stdout)["cells"]} == {"matched"}


async def test_restore_rebuilds_and_verifies_state(recorded: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(recorded, as_version=4)
    workspace = tmp_path / "restore-ws"
    shutil.copytree(recorded.parent / "workspace", workspace)
    sandbox = await Sandbox.start(SandboxSettings(), workspace)
    try:
        report = await restore_state(notebook, sandbox, until=3)
        assert report.ok, report.summary()
        assert report.ran == [1, 2, 3]
        assert {"df", "totals", "pd", "Probe"} <= set(report.check.matched)
        result = await sandbox.execute("print(totals.idxmax(), len(df))")
        assert result.text().strip() == "West 240"
    finally:
        await sandbox.shutdown()

    # a deliberately changed input file is caught by the manifest check
    data = workspace / "sales.csv"
    data.write_text(data.read_text().replace("West", "Wset", 1))
    sandbox = await Sandbox.start(SandboxSettings(), workspace)
    try:
        report = await restore_state(notebook, sandbox)
        assert not report.ok
        assert "df" in report.check.mismatched and "totals" in report.check.mismatched
        assert report.skipped == {5: "recorded status error"}
    finally:
        await sandbox.shutdown()


def test_continue_a_copied_notebook_in_a_new_directory(recorded: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    (moved / "workspace").mkdir(parents=True)
    shutil.copyfile(recorded, moved / "analysis.ipynb")
    shutil.copyfile(recorded.parent / "workspace" / "sales.csv", moved / "workspace" / "sales.csv")
    shutil.rmtree(recorded.parent)  # nothing of the original machine is left
    script = [ScriptedTurn.python("print(totals.idxmin())"), ScriptedTurn.final("North")]
    with ScriptedModelServer(script) as server:
        done = cli(
            "continue",
            str(moved / "analysis.ipynb"),
            "Which region has the lowest revenue?",
            "--base-url",
            server.base_url,
            "--model",
            "scripted",
            "--json",
        )
        first_request = json.dumps(server.completion_requests()[0].body)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed" and summary["answer"] == "North"
    continued = nbformat.read(summary["notebook"], as_version=4)
    assert Path(summary["notebook"]).name == "analysis-continued.ipynb"
    last_code = [c for c in continued.cells if c.cell_type == "code"][-1]
    assert last_code.outputs[0]["text"] == "North\n"
    assert "Revenue by region?" in first_request  # the old conversation was restored
    assert "restored in a new sandbox" in first_request
    original = nbformat.read(moved / "analysis.ipynb", as_version=4)
    assert len(original.cells) < len(continued.cells)


def test_plain_notebooks_replay(docker_available: None, tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("values = [1.5, 2.5]\nsum(values)"),
            nbformat.v4.new_code_cell("print('mean', sum(values) / len(values))"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    notebook.cells[0].outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "4.0"}, execution_count=1)
    ]
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="mean 2.0\n")]
    path = tmp_path / "plain.ipynb"
    nbformat.write(notebook, path)
    done = cli("replay", str(path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2, 3]", "not a notebook"),
    ],
)
def test_bad_notebooks_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    done = cli("replay", str(path), "--sandbox", "local")
    assert done.returncode == 2
    assert message in done.stderr.replace("\n", " ")


async def test_a_missing_data_file_is_named(recorded: Path, tmp_path: Path) -> None:
    (recorded.parent / "workspace" / "sales.csv").unlink()
    done = cli("replay", str(recorded))
    assert done.returncode == 2
    assert "missing input file sales.csv" in done.stderr


async def test_replay_until_a_cell(recorded: Path) -> None:
    report = await replay_notebook(recorded, ReplayOptions(until=2))
    assert [cell.outcome for cell in report.cells] == ["matched", "matched"]


@pytest.mark.parametrize("name", ["sales-summary", "growth-question"])
def test_the_example_notebooks_replay_and_match(docker_available: None, name: str) -> None:
    path = Path(__file__).parent.parent / "notebooks" / f"{name}.ipynb"
    before = path.read_bytes()
    done = cli("replay", str(path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {cell["outcome"] for cell in json.loads(done.stdout)["cells"]} == {"matched"}
    assert path.read_bytes() == before
