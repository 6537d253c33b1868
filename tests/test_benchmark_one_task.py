"""One benchmark task end to end: ``kernelagent run`` in the Docker sandbox with a scripted
model, the generated data, and the benchmark's scorer (a plot task, so the saved PNG is
checked too). The real-model run (``python -m tests.benchmarks.run_tasks``) is not in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.benchmarks.run_tasks import RecordingProxy, Runner, parse_args, render
from tests.benchmarks.scoring import score_task
from tests.benchmarks.tasks.datasets import generate
from tests.benchmarks.tasks.suite import BY_ID

TASK = BY_ID["plot_region_bars"]

SCRIPT = [
    ScriptedTurn.python("import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf.head()"),
    ScriptedTurn.python(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "totals = df.groupby('region')['revenue'].sum()\n"
        "ax = totals.plot.bar(title='Revenue by region')\n"
        "plt.savefig('plot.png')\nlen(ax.patches)"
    ),
    ScriptedTurn.final("FINAL ANSWER: 4"),
]


async def test_one_task_through_the_runner(docker_available: None, tmp_path: Path) -> None:
    """The benchmark's own path: Runner -> recording proxy -> scripted server; kernelagent run
    in Docker; the answer and the saved plot scored; calls and tokens counted at the proxy."""
    data = tmp_path / "data"
    generate(data)
    args = parse_args(
        ["--max-steps", "5", "--timeout", "240", "--check-answers", "on", "--attempts", "1"]
    )
    with ScriptedModelServer(SCRIPT) as server:
        proxy = RecordingProxy(server.base_url, temperature=0.0, max_tokens=1024).start()
        try:
            runner = Runner(args, tmp_path / "scratch", data, proxy, "scripted-model", "chat")
            result = await runner.run("kernelagent", TASK)
        finally:
            proxy.stop()
        requests = server.completion_requests()
    assert result.status == "completed", result.agent_reported
    assert result.passed, result.reason
    assert (result.answer, result.expected) == ("FINAL ANSWER: 4", 4.0)
    # every model call went through the proxy with the benchmark's sampling settings
    assert result.steps == len(SCRIPT) == len(requests)
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert all(r.body["temperature"] == 0.0 and not r.body.get("stream") for r in requests)
    assert TASK.answer_format in json.dumps(requests[0].body)

    nb = nbformat.read(result.notebook, as_version=4)
    statuses = [cell.metadata.kernelagent.status for cell in nb.cells if cell.cell_type == "code"]
    assert statuses == ["ok", "ok"]
    table = render([result], title="t", commands=["c"], notes=[], agents=["kernelagent"])
    assert (
        "| plot_region_bars | plot | kernelagent | FINAL ANSWER: 4 | 4 | yes | completed | 3 |"
        in table
    )


def test_a_wrong_answer_fails(docker_available: None, tmp_path: Path) -> None:
    """The same run without the plot and with a wrong count is scored as a failure."""
    data = tmp_path / "data"
    generate(data)
    script = [
        ScriptedTurn.python("import pandas as pd\npd.read_csv('sales.csv').shape"),
        ScriptedTurn.final("5"),
    ]
    with ScriptedModelServer(script) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "run",
                TASK.prompt(),
                "--data",
                str(data / "sales.csv"),
                "--workspace",
                str(tmp_path / "ws"),
                "--notebook",
                str(tmp_path / "nb.ipynb"),
                "--base-url",
                server.base_url,
                "--model",
                "scripted-model",
                "--api",
                "chat",
                "--json",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])["answer"]
    result = score_task(TASK, answer, TASK.expected(data), tmp_path / "ws")
    assert not result.passed
    assert "plot.png was not saved" in result.reason and "5 != 4" in result.reason
