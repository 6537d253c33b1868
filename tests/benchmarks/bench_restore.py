"""Restore and resume benchmarks.

    python -m tests.benchmarks.bench_restore [--cells 10 50]

* restore: rebuilding the state of a recorded N-cell session in a fresh sandbox vs
  the original run time of those cells (target ≤ 1.2x plus one sandbox start);
* resume: a paused session whose container was stopped (fresh sandbox + replay)
  vs re-attaching to its live container, for N recorded cells.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.api import arun, build_config
from kernelagent.notebook.recorder import load_notebook
from kernelagent.replay.restore import restore_state
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.session.durable import resume_session, stop_idle_sandboxes
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.benchmarks.report import Row, ms, write_table

SALES = Path(__file__).resolve().parents[2] / "examples" / "sales.csv"


def analysis_cells(count: int) -> list[str]:
    """Cells of the kind a data-analysis session runs: load, derive, aggregate."""
    cells = [
        "import pandas as pd\nimport numpy as np\ndf = pd.read_csv('sales.csv', "
        "parse_dates=['date'])"
    ]
    for index in range(1, count):
        cells.append(
            f"s{index} = df.groupby('region')['revenue'].agg(['sum', 'mean']) * {index}\n"
            f"m{index} = np.sort(df['units'].to_numpy()) + {index}\n"
            f"s{index}.round(2)"
        )
    return cells


async def record(
    count: int, tmp: Path, store: SessionStore, approve_last: bool
) -> tuple[str, Path, float]:
    """A recorded session of ``count`` cells; the last action waits for approval if asked."""
    turns = [ScriptedTurn.python(code) for code in analysis_cells(count)]
    if approve_last:
        turns.append(ScriptedTurn.shell("echo done"))
    turns.append(ScriptedTurn.final("ok"))
    with ScriptedModelServer(turns) as server:
        config = build_config(model="scripted", base_url=server.base_url, max_steps=count + 5)
        config.approval = ApprovalPolicy(mode="shell")
        result = await arun(
            "benchmark",
            data=[SALES],
            config=config,
            store=store,
            workspace=tmp / f"ws{count}",
            notebook=tmp / f"s{count}.ipynb",
        )
    notebook = load_notebook(result.notebook_path)
    run_seconds = sum(
        cell.metadata.kernelagent.get("duration", 0.0)
        for cell in notebook.cells
        if cell.cell_type == "code"
    )
    return result.session_id, result.notebook_path, run_seconds


async def time_restore(notebook_path: Path, workspace: Path) -> tuple[float, float]:
    start = time.perf_counter()
    sandbox = await Sandbox.start(workspace=workspace)
    started = time.perf_counter() - start
    report = await restore_state(load_notebook(notebook_path), sandbox)
    total = time.perf_counter() - start
    await sandbox.shutdown()
    assert report.ok, report.summary()
    return total, started


async def time_resume(store: SessionStore, session_id: str) -> float:
    from kernelagent.agent.model import Conversation

    class NoModel:
        name, supports_images = "none", False

        async def turn(
            self, conversation: Conversation, tools, on_text_delta=None, *, temperature=None
        ):  # type: ignore[no-untyped-def]
            raise AssertionError("resume must not call the model in this benchmark")

    from kernelagent.session.durable import decide

    decision = decide(store.get(session_id), "rejected", reason="benchmark")
    start = time.perf_counter()
    session, _ = await resume_session(store, session_id, NoModel(), decision=decision)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    session.sandbox.client.stop_channels()  # leave the container as it was for the next measurement
    session.recorder.save()
    return elapsed


async def main(sizes: list[int]) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    store = SessionStore(tmp / "home")
    rows: list[Row] = []
    for count in sizes:
        session_id, notebook_path, run_seconds = await record(count, tmp, store, approve_last=True)
        restore_total, sandbox_start = await time_restore(
            notebook_path, store.get(session_id).workspace
        )
        replay_part = restore_total - sandbox_start
        ratio = replay_part / run_seconds if run_seconds else float("nan")
        rows.append(
            Row(
                f"restore {count} cells (re-run + verify)",
                ms(restore_total),
                f"{ms(run_seconds)} original cells + {ms(sandbox_start)} sandbox start",
                f"{ratio:.2f} (excl. start)",
                "≤ 1.2 + one start",
                ratio <= 1.2,
            )
        )
        reattach = await time_resume(store, session_id)
        await stop_idle_sandboxes(store, idle_seconds=0)
        restored = await time_resume(store, session_id)
        rows.append(
            Row(
                f"resume a paused session, {count} cells, container stopped",
                ms(restored),
                f"{ms(reattach)} (re-attach to live container)",
                f"{restored / reattach:.1f}",
                "",
                None,
            )
        )
    return write_table(
        "restore",
        "Restore and resume",
        "python -m tests.benchmarks.bench_restore --cells " + " ".join(map(str, sizes)),
        rows,
        notes="Cells are pandas/numpy aggregations over examples/sales.csv. 'Original' is the sum "
        "of the "
        "recorded cell durations. Restore re-runs the successful cells, then fingerprints every "
        "variable "
        "and checks it against the recorded manifests.",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    print(asyncio.run(main(args.cells)).read_text())
