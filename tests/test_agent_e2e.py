"""The agent end to end: the real openai client over HTTP to a scripted server on
127.0.0.1, real kernels in the Docker sandbox, the CLI and the Python API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import kernelagent.api as api
from kernelagent.events import CellFinished, CellOutput, CellStarted, SessionFinished
from kernelagent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn

EXAMPLES = Path(__file__).parent.parent / "examples"
SALES = EXAMPLES / "sales.csv"

ANALYSIS_SCRIPT = [
    ScriptedTurn.python(
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf.shape", text="First, the data."
    ),
    ScriptedTurn.python("totals = df.groupby('region')['revenue'].sum()\ntotals.sort_values()"),
    ScriptedTurn.python(
        "import matplotlib.pyplot as plt\ntotals.plot.bar(title='revenue by region')\nplt.show()"
    ),
    ScriptedTurn.python("print(best)"),  # fails: best is not defined yet
    ScriptedTurn.python("best = totals.idxmax()\nprint(best)", text="I forgot to define it."),
    ScriptedTurn.final("West"),
]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=240,
    )


def test_cli_multi_step_analysis(docker_available: None, tmp_path: Path) -> None:
    notebook = tmp_path / "session.ipynb"
    with ScriptedModelServer(ANALYSIS_SCRIPT) as server:
        done = cli(
            "run",
            "Which region has the highest total revenue?",
            "--data",
            str(SALES),
            "--base-url",
            server.base_url,
            "--model",
            "scripted-model",
            "--notebook",
            str(notebook),
            "--workspace",
            str(tmp_path / "ws"),
            "--json",
        )
        requests = server.completion_requests()
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed" and summary["answer"] == "West"
    assert summary["usage"]["requests"] == len(ANALYSIS_SCRIPT)

    # the failing cell's traceback reached the model, ANSI-free, and it recovered
    after_error = json.dumps(requests[4].body)
    assert "NameError" in after_error and "\\u001b[" not in after_error
    # ...with the names the kernel does have, from the cells' manifests
    assert "'best' is not defined. The kernel has: df (DataFrame " in after_error
    assert "totals (Series " in after_error

    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.metadata.kernelagent.status for c in code_cells] == ["ok", "ok", "ok", "error", "ok"]
    assert code_cells[1].outputs[0]["data"]["text/plain"].splitlines()[-2].startswith("West")
    assert any("image/png" in o.get("data", {}) for o in code_cells[2].outputs)
    assert code_cells[4].outputs[0]["text"] == "West\n"
    assert nb.metadata.kernelagent.session_id == summary["session_id"]
    assert nb.metadata.kernelagent.usage["requests"] == len(ANALYSIS_SCRIPT)
    assert nb.metadata.kernelagent.conversation["conversation"]["items"]
    assert nb.cells[0].source.startswith("**Task:**")
    assert nb.cells[-1].source == "**Answer:** West"


async def test_python_api_streams_typed_events_and_notebook_reruns(
    docker_available: None, tmp_path: Path
) -> None:
    script = [
        ScriptedTurn.python("import pandas as pd\ndf = pd.read_csv('sales.csv')"),
        ScriptedTurn.shell("wc -l sales.csv"),
        ScriptedTurn.python("print(round(float(df.revenue.mean()), 2))"),
        ScriptedTurn.final("done"),
    ]
    with ScriptedModelServer(script) as server:
        events = [
            event
            async for event in api.astream(
                "Mean revenue?",
                data=[SALES],
                workspace=tmp_path / "ws",
                notebook=tmp_path / "s.ipynb",
                base_url=server.base_url,
                model="scripted-model",
            )
        ]
    kinds = [event.type for event in events]
    assert kinds[0] == "session_started" and kinds[-1] == "session_finished"
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    started = [e for e in events if isinstance(e, CellStarted)]
    assert [e.kind for e in started] == ["python", "shell", "python"]
    assert started[1].code == "%%bash\nwc -l sales.csv"
    assert any(isinstance(e, CellOutput) for e in events)
    assert all(e.status == "ok" for e in events if isinstance(e, CellFinished))
    finished = events[-1]
    assert isinstance(finished, SessionFinished) and finished.answer == "done"

    # a session without errors re-runs top to bottom in a fresh kernel
    nb = nbformat.read(tmp_path / "s.ipynb", as_version=4)
    recorded = [c.outputs for c in nb.cells if c.cell_type == "code"]
    await NotebookClient(
        nb, timeout=60, resources={"metadata": {"path": str(tmp_path / "ws")}}
    ).async_execute()
    rerun = [c.outputs for c in nb.cells if c.cell_type == "code"]
    assert rerun[2][0]["text"] == recorded[2][0]["text"] == "349.14\n"


@pytest.mark.parametrize("api_kind", ["chat", "code-blocks"])
def test_other_model_apis(docker_available: None, tmp_path: Path, api_kind: str) -> None:
    if api_kind == "chat":
        script = [ScriptedTurn.python("x = 6 * 7\nx"), ScriptedTurn.final("42")]
    else:
        script = [
            ScriptedTurn.say("Computing.\n```python\nx = 6 * 7\nprint(x)\n```"),
            ScriptedTurn.say("FINAL ANSWER: 42"),
        ]
    with ScriptedModelServer(script) as server:
        result = api.run(
            "What is 6*7?",
            api=api_kind,
            base_url=server.base_url,
            model="scripted-model",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
        )
        paths = {r.path for r in server.completion_requests()}
    assert paths == {"/v1/chat/completions"}
    assert result.status == "completed" and result.answer == "42"
    nb = nbformat.read(tmp_path / "s.ipynb", as_version=4)
    assert [c.metadata.kernelagent.status for c in nb.cells if c.cell_type == "code"] == ["ok"]


def test_bad_model_output_goes_back_to_the_model(docker_available: None, tmp_path: Path) -> None:
    script = [
        ScriptedTurn(tool_calls=[ScriptedToolCall(name="python", arguments='{"code": "1+')]),
        ScriptedTurn.python("'fine'"),
        ScriptedTurn(tool_calls=[ScriptedToolCall(name="rm_rf", arguments={"path": "/"})]),
        ScriptedTurn(text=""),
        ScriptedTurn.python("'recovered'"),
        ScriptedTurn.final("ok"),
    ]
    with ScriptedModelServer(script) as server:
        result = api.run(
            "Try things.",
            base_url=server.base_url,
            model="scripted-model",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
        )
        bodies = [json.dumps(r.body) for r in server.completion_requests()]
    assert result.status == "completed"
    assert "not valid JSON" in bodies[1]
    assert "Unknown tool 'rm_rf'" in bodies[3]
    assert "You did not call a tool" in bodies[4]


def test_repeated_failures_and_missing_modules_get_a_note(tmp_path: Path) -> None:
    script = [
        ScriptedTurn.python("import nosuchmodule_for_test"),
        ScriptedTurn.python("import nosuchmodule_for_test  \n"),
        ScriptedTurn.final("cannot"),
    ]
    with ScriptedModelServer(script) as server:
        api.run(
            "Try.",
            sandbox="local",
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
        )
        bodies = [json.dumps(r.body) for r in server.completion_requests()]
    assert "'nosuchmodule_for_test' is not installed" in bodies[1] and "no network" in bodies[1]
    assert "same as cell" not in bodies[1]
    # the repeat is refused, not run: the model reads which cell it repeats and the note again
    assert (
        "[not run] This code is the same as cell 1, which failed with: ModuleNotFoundError"
        in bodies[2]
    )
    assert "'nosuchmodule_for_test' is not installed" in bodies[2]


def test_no_stream_sends_plain_requests_and_counts_usage(tmp_path: Path) -> None:
    with ScriptedModelServer([ScriptedTurn.python("6 * 7"), ScriptedTurn.final("42")]) as server:
        done = cli(
            "run",
            "Multiply.",
            "--sandbox",
            "local",
            "--base-url",
            server.base_url,
            "--model",
            "m",
            "--api",
            "chat",
            "--no-stream",
            "--json",
            "--workspace",
            str(tmp_path / "ws"),
            "--notebook",
            str(tmp_path / "s.ipynb"),
        )
        bodies = [r.body for r in server.completion_requests()]
    assert done.returncode == 0, done.stderr
    assert [body.get("stream", False) for body in bodies] == [False, False]
    summary = json.loads(done.stdout)
    assert summary["answer"] == "42" and summary["usage"]["input_tokens"] > 0


def test_a_model_that_never_acts_ends_the_session(tmp_path: Path) -> None:
    with ScriptedModelServer([ScriptedTurn.say("hmm")] * 5) as server:
        result = api.run(
            "Do nothing.",
            sandbox="local",
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
        )
    assert result.status == "failed" and "no tool call" in result.reason


def test_max_steps_pauses_the_session(tmp_path: Path) -> None:
    with ScriptedModelServer([ScriptedTurn.python("1")] * 3) as server:
        result = api.run(
            "Loop.",
            sandbox="local",
            max_steps=2,
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
        )
    assert result.status == "paused" and "step limit" in result.reason


# -- bad input: one clear line, non-zero exit, nothing half-written ----------------------


def test_missing_api_key(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    done = cli(
        "run", "task", "--model", "gpt-4.1-mini", "--notebook", str(tmp_path / "s.ipynb"), env=env
    )
    assert done.returncode == 1
    assert "no API key" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert not (tmp_path / "s.ipynb").exists()


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = cli(
        "run",
        "task",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--notebook",
        str(tmp_path / "s.ipynb"),
    )
    assert done.returncode == 1
    assert "cannot connect" in done.stderr
    assert not (tmp_path / "s.ipynb").exists()


def test_rejected_key(tmp_path: Path) -> None:
    with ScriptedModelServer([ScriptedTurn.final("x")], api_key="sk-right") as server:
        done = cli(
            "run",
            "task",
            "--base-url",
            server.base_url,
            "--notebook",
            str(tmp_path / "s.ipynb"),
            env={"OPENAI_API_KEY": "sk-wrong"},
        )
    assert done.returncode == 1 and "rejected the API key" in done.stderr
    assert not (tmp_path / "s.ipynb").exists()


def test_server_errors_after_retries_are_reported(tmp_path: Path) -> None:
    fail = ScriptedTurn.error(500, "boom", headers={"retry-after-ms": "10"})
    with ScriptedModelServer([fail] * 5) as server:
        done = cli(
            "run",
            "task",
            "--sandbox",
            "local",
            "--base-url",
            server.base_url,
            "--notebook",
            str(tmp_path / "s.ipynb"),
            "--workspace",
            str(tmp_path / "ws"),
        )
    assert done.returncode == 1
    assert "failed with 500" in done.stderr
    nbformat.validate(nbformat.read(tmp_path / "s.ipynb", as_version=4))  # the record stays valid


def test_missing_data_file_fails_before_any_sandbox(tmp_path: Path) -> None:
    done = cli(
        "run", "task", "--data", str(tmp_path / "nope.csv"), "--base-url", "http://127.0.0.1:9/v1"
    )
    assert done.returncode == 2
    assert "data file not found" in done.stderr


def _slow_cell_printed(path: Path) -> bool:
    try:
        cells = nbformat.reads(path.read_text(), as_version=4).cells
    except Exception:  # not written yet
        return False
    return any(c.cell_type == "code" and "range(100)" in c.source and c.outputs for c in cells)


def test_ctrl_c_stops_cleanly_and_the_notebook_stays_valid(tmp_path: Path) -> None:
    import signal
    import time

    slow = "import time\nfor i in range(100):\n    print(i, flush=True)\n    time.sleep(0.2)"
    with ScriptedModelServer([ScriptedTurn.python("x = 1"), ScriptedTurn.python(slow)]) as server:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "run",
                "count",
                "--sandbox",
                "local",
                "--base-url",
                server.base_url,
                "--notebook",
                str(tmp_path / "s.ipynb"),
                "--workspace",
                str(tmp_path / "ws"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _slow_cell_printed(tmp_path / "s.ipynb"):
            time.sleep(0.2)  # the slow cell has printed: the first one is done
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert process.returncode == 130
    nb = nbformat.read(tmp_path / "s.ipynb", as_version=4)
    nbformat.validate(nb)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "interrupted"]
    assert cells[1].outputs and cells[1].outputs[0]["text"].startswith("0\n")
    assert nb.metadata.kernelagent.status == "interrupted"


def test_long_sessions_are_compacted_for_the_model(tmp_path: Path) -> None:
    script = [ScriptedTurn.python(f"print('{n % 10}' * 3000)") for n in range(30)]
    script.append(ScriptedTurn.final("done"))
    with ScriptedModelServer(script) as server:
        config = api.build_config(
            model="m", base_url=server.base_url, sandbox="local", max_steps=40
        )
        config.limits.context_chars = 20_000
        config.limits.summarize_context = False  # clipping (the summary: test_compaction.py)
        result = api.run(
            "Print a lot.", config=config, workspace=tmp_path / "ws", notebook=tmp_path / "s.ipynb"
        )
        sizes = [len(json.dumps(r.body)) for r in server.completion_requests()]
    assert result.status == "completed"
    assert max(sizes[-5:]) < 40_000 and sizes[10] < max(sizes[-5:]) * 2
    assert "compacted" in json.dumps(server.completion_requests()[-1].body)
    cells = [
        c for c in nbformat.read(tmp_path / "s.ipynb", as_version=4).cells if c.cell_type == "code"
    ]
    assert len(cells) == 30 and all(
        len(c.outputs[0]["text"]) == 3001 for c in cells
    )  # the notebook keeps all
