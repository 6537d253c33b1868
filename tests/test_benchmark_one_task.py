"""One benchmark task end to end: ``kernelagent run`` in the Docker sandbox with a scripted
model, the generated data, and the benchmark's scorer (a plot task, so the saved PNG is
checked too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from kernelagent.testing import ScriptedModelServer, ScriptedTurn
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


def test_one_task_through_kernelagent_run(docker_available: None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(data)
    workspace = tmp_path / "workspace"
    notebook = tmp_path / "task.ipynb"
    with ScriptedModelServer(SCRIPT) as server:
        done = subprocess.run(
            [
                sys.executable, "-m", "kernelagent.cli", "run", TASK.prompt(),
                *[arg for name in TASK.files for arg in ("--data", str(data / name))],
                "--workspace", str(workspace), "--notebook", str(notebook),
                "--base-url", server.base_url, "--model", "scripted-model", "--api", "chat",
                "--max-steps", "5", "--json", "--quiet",
            ],
            capture_output=True, text=True, timeout=240, env={**os.environ},
        )
        requests = server.completion_requests()
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    # the model was asked the task's question with its answer format
    assert TASK.answer_format in json.dumps(requests[0].body)

    result = score_task(TASK, summary["answer"], TASK.expected(data), workspace)
    assert result.passed, result.reason
    assert result.parsed == 4.0

    nb = nbformat.read(notebook, as_version=4)
    statuses = [cell.metadata.kernelagent.status for cell in nb.cells if cell.cell_type == "code"]
    assert statuses == ["ok", "ok"]


def test_a_wrong_answer_fails(docker_available: None, tmp_path: Path) -> None:
    """The same run without the plot and with a wrong count is scored as a failure."""
    data = tmp_path / "data"
    generate(data)
    script = [ScriptedTurn.python("import pandas as pd\npd.read_csv('sales.csv').shape"), ScriptedTurn.final("5")]
    with ScriptedModelServer(script) as server:
        done = subprocess.run(
            [
                sys.executable, "-m", "kernelagent.cli", "run", TASK.prompt(), "--data", str(data / "sales.csv"),
                "--workspace", str(tmp_path / "ws"), "--notebook", str(tmp_path / "nb.ipynb"),
                "--base-url", server.base_url, "--model", "scripted-model", "--api", "chat", "--json", "--quiet",
            ],
            capture_output=True, text=True, timeout=240,
        )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])["answer"]
    result = score_task(TASK, answer, TASK.expected(data), tmp_path / "ws")
    assert not result.passed
    assert "plot.png was not saved" in result.reason and "5 != 4" in result.reason
