"""The machine-wide warm sandbox pool, with real parts: a detached supervisor process,
real Docker containers and ipykernels, CLI processes talking to a scripted model server
on 127.0.0.1. Each test has a pool directory of its own and stops its pools at the end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors
import nbformat
import pytest

from kernelagent.sandbox.docker_provisioner import docker_client
from kernelagent.sandbox.maintenance import list_sandboxes
from kernelagent.sandbox.pool_client import (
    PoolOptions,
    ensure_pool,
    start_pool,
    stop_pools,
    take_sandbox,
)
from kernelagent.sandbox.pool_files import (
    LABEL_POOL,
    PoolPaths,
    ReadySandbox,
    pool_key,
    read_state,
    ready_records,
    supervisor_alive,
)
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import DEFAULT_WARM_UP
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.test_agent_e2e import SALES, cli

TEST_LABELS = {"kernelagent.test": "test_pool"}


@pytest.fixture
def pool_root(
    docker_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The pool on, in a directory of this test's; every pool and pooled container it
    made is gone afterwards."""
    root = tmp_path / "pool"
    monkeypatch.setenv("KERNELAGENT_POOL", "1")
    monkeypatch.setenv("KERNELAGENT_POOL_DIR", str(root))
    monkeypatch.setenv("KERNELAGENT_POOL_MAX", "2")
    monkeypatch.setenv("KERNELAGENT_POOL_IDLE_TIMEOUT", "120")  # a safety net if teardown fails
    try:
        yield root
    finally:
        keys = [state.parent.name for state in root.glob("*/state.json")] + [
            path.name for path in root.glob("*") if path.is_dir()
        ]
        stop_pools(root=root)
        client = docker_client()
        for key in set(keys):
            for container in client.containers.list(
                all=True, filters={"label": f"{LABEL_POOL}={key}"}
            ):
                container.remove(force=True)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def only_ready(paths: PoolPaths) -> ReadySandbox:
    records = ready_records(paths)
    assert len(records) == 1, records
    return ReadySandbox.model_validate_json(records[0].read_text())


def container_exists(container_id: str) -> bool:
    try:
        docker_client().containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


PANDAS_SCRIPT = [
    # no import: the warm-up's pd is already there
    ScriptedTurn.python(
        "df = pd.read_csv('sales.csv')\nprint(df.shape, sorted(__import__('os').listdir('.')))"
    ),
    ScriptedTurn.final("done"),
]


def run_scripted(
    tmp_path: Path, name: str, script: list[ScriptedTurn], *extra: str
) -> tuple[dict, nbformat.NotebookNode, str]:
    notebook = tmp_path / f"{name}.ipynb"
    with ScriptedModelServer(script) as server:
        done = cli(
            "run",
            "How many rows?",
            "--data",
            str(SALES),
            "--base-url",
            server.base_url,
            "--model",
            "scripted-model",
            "--notebook",
            str(notebook),
            "--json",
            *extra,
        )
        prompt = json.dumps(server.completion_requests()[0].body)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), nbformat.read(notebook, as_version=4), prompt


def test_second_cli_run_gets_a_pooled_sandbox_and_replay_runs_its_warm_up(
    pool_root: Path, tmp_path: Path
) -> None:
    _first, first_nb, _ = run_scripted(tmp_path, "first", PANDAS_SCRIPT)
    # the pool was empty: the first run started cold, ran the warm-up itself, and started the pool
    assert first_nb.metadata.kernelagent.kernel.origin == "cold"
    assert first_nb.metadata.kernelagent.warm_up.code == DEFAULT_WARM_UP
    paths = PoolPaths.of(pool_key(SandboxSettings(), DEFAULT_WARM_UP), pool_root)
    assert supervisor_alive(paths)
    wait_for(lambda: len(ready_records(paths)) >= 1, "the pool has a warmed sandbox")
    pooled = only_ready(paths) if len(ready_records(paths)) == 1 else None

    second, notebook, prompt = run_scripted(tmp_path, "second", PANDAS_SCRIPT)
    recorded = notebook.metadata.kernelagent
    assert recorded.kernel.origin == "pool" and recorded.kernel.pool == paths.key
    assert recorded.warm_up.code == DEFAULT_WARM_UP
    assert recorded.warm_up.names == {
        "matplotlib": "matplotlib",
        "np": "numpy",
        "pd": "pandas",
        "plt": "matplotlib.pyplot",
    }
    assert (
        "Already imported in the kernel: matplotlib, np (numpy), pd (pandas), "
        "plt (matplotlib.pyplot)." in prompt
    )
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    # the session's own workspace: its input and nothing from the warm-up
    assert cell.outputs[0]["text"] == "(240, 5) ['sales.csv']\n"
    assert cell.execution_count == 1  # the warm-up ran silently
    assert "pd" not in {
        entry["name"] for entry in cell.metadata.kernelagent.manifest
    }  # a name the warm-up made
    workspace = Path(second["workspace"])
    assert pool_root not in workspace.parents and (workspace / "sales.csv").is_file()
    if pooled is not None:
        assert not Path(pooled.sandbox_state["workspace"]).exists()  # moved to the session
        assert not container_exists(
            pooled.container_id
        )  # the session shut it down; never back in the pool

    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernelagent.cli",
            "replay",
            str(tmp_path / "second.ipynb"),
            "--json",
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    report = json.loads(replay.stdout)
    assert report["warm_up"] == DEFAULT_WARM_UP and report["matched"] == 1 and report["error"] == 0


def test_no_pool_starts_cold_without_the_warm_up(pool_root: Path, tmp_path: Path) -> None:
    script = [
        ScriptedTurn.python("import pandas as pd\nprint(len(pd.read_csv('sales.csv')))"),
        ScriptedTurn.final("240"),
    ]
    summary, notebook, prompt = run_scripted(tmp_path, "cold", script, "--no-pool")
    assert summary["answer"] == "240"
    assert notebook.metadata.kernelagent.kernel.origin == "cold"
    assert notebook.metadata.kernelagent.warm_up is None
    assert "Already imported" not in prompt
    assert not list(pool_root.glob("*/state.json"))  # no pool was started


def take_in_processes(count: int, root: Path, workspaces: Path) -> list[str]:
    """``count`` processes take a sandbox at once; each prints its container id (or miss)."""
    code = (
        "import asyncio, sys\nfrom pathlib import Path\n"
        "from kernelagent.sandbox.pool_client import take_sandbox\n"
        "from kernelagent.sandbox.settings import SandboxSettings\n"
        "from kernelagent.sandbox.warm_up import DEFAULT_WARM_UP\n"
        "async def main():\n"
        "    handout = await take_sandbox(SandboxSettings(labels="
        + repr(TEST_LABELS)
        + "), DEFAULT_WARM_UP,\n"
        "                                 Path(sys.argv[2]), root=Path(sys.argv[1]))\n"
        "    if handout is None:\n        print('miss', flush=True); return\n"
        "    print(handout.sandbox.manager.provisioner.container_id, flush=True)\n"
        "    result = await handout.sandbox.execute('print(pd.__name__)')\n"
        "    assert result.outputs[0]['text'] == 'pandas\\n', result.outputs\n"
        "    await handout.sandbox.shutdown()\n"
        "asyncio.run(main())\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root), str(workspaces / f"taker-{n}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_concurrent_takers_never_get_the_same_container(pool_root: Path, tmp_path: Path) -> None:
    settings = SandboxSettings(labels=TEST_LABELS)
    asyncio.run(start_pool(settings, DEFAULT_WARM_UP, 2, max_size=2, root=pool_root))
    paths = PoolPaths.of(pool_key(settings, DEFAULT_WARM_UP), pool_root)
    offered = {
        ReadySandbox.model_validate_json(p.read_text()).container_id for p in ready_records(paths)
    }
    assert len(offered) == 2

    taken = take_in_processes(4, pool_root, tmp_path)
    hits = [line for line in taken if line != "miss"]
    assert len(hits) == len(set(hits)), taken  # no container went to two takers
    assert set(hits) <= offered and len(hits) >= 1, (taken, offered)


def test_a_pooled_sandbox_with_a_dead_kernel_is_replaced(pool_root: Path, tmp_path: Path) -> None:
    settings = SandboxSettings(labels=TEST_LABELS)
    options = PoolOptions(min_size=1, max_size=1, idle_timeout=120)
    asyncio.run(
        start_pool(settings, DEFAULT_WARM_UP, 1, max_size=1, root=pool_root, options=options)
    )
    paths = PoolPaths.of(pool_key(settings, DEFAULT_WARM_UP), pool_root)

    # the supervisor notices a dead kernel by itself and puts a live one in its place
    dead = only_ready(paths)
    docker_client().containers.get(dead.container_id).kill()
    wait_for(
        lambda: (read_state(paths) or None) is not None and read_state(paths).discarded_dead >= 1,  # type: ignore[union-attr]
        "the supervisor discarded the dead sandbox",
    )
    wait_for(
        lambda: len(ready_records(paths)) == 1 and only_ready(paths).kernel_id != dead.kernel_id,
        "a new sandbox is ready",
    )
    assert not container_exists(dead.container_id)

    # a taker that finds a dead one discards it instead of using it
    dying = only_ready(paths)
    docker_client().containers.get(dying.container_id).kill()
    handout = asyncio.run(take_sandbox(settings, DEFAULT_WARM_UP, tmp_path / "ws", root=pool_root))
    assert handout is None  # the only one was dead: the session starts cold instead
    # the taker or the supervisor, whichever claims it first, removes it
    wait_for(lambda: not container_exists(dying.container_id), "the dead sandbox was removed")
    wait_for(
        lambda: len(ready_records(paths)) == 1 and only_ready(paths).kernel_id != dying.kernel_id,
        "the pool refilled",
    )


def test_the_pool_stops_after_its_idle_timeout(pool_root: Path) -> None:
    settings = SandboxSettings(labels=TEST_LABELS)
    options = PoolOptions(min_size=1, max_size=1, idle_timeout=4)
    paths = asyncio.run(
        ensure_pool(settings, DEFAULT_WARM_UP, options, root=pool_root, wait_ready=90)
    )
    container_id = only_ready(paths).container_id
    started = time.monotonic()
    wait_for(lambda: not supervisor_alive(paths), "the idle pool stopped", timeout=60)
    assert time.monotonic() - started < 40
    assert read_state(paths) is None and not ready_records(paths)
    assert not container_exists(container_id)


def test_a_taken_sandbox_is_its_owners_and_gets_the_sessions_files(
    pool_root: Path, tmp_path: Path
) -> None:
    settings = SandboxSettings(labels=TEST_LABELS)
    asyncio.run(start_pool(settings, DEFAULT_WARM_UP, 1, max_size=1, root=pool_root))
    workspace = tmp_path / "attempt-2" / "workspace"  # like a parallel attempt's copy
    workspace.mkdir(parents=True)
    (workspace / "input.csv").write_text("a,b\n1,2\n")

    async def take_and_check() -> None:
        handout = await take_sandbox(settings, DEFAULT_WARM_UP, workspace, root=pool_root)
        assert handout is not None
        try:
            result = await handout.sandbox.execute("print(pd.read_csv('input.csv').shape)")
            assert result.outputs[0]["text"] == "(1, 2)\n"
            (workspace / "later.txt").write_text("x")  # the host path is the mounted one
            assert (await handout.sandbox.execute("print(open('later.txt').read())")).outputs[0][
                "text"
            ] == "x\n"
            container_id = handout.sandbox.manager.provisioner.container_id
            stop_pools(root=pool_root)  # the supervisor goes; the taken sandbox stays its owner's
            assert await handout.sandbox.is_alive()
            mine = [
                entry
                for entry in list_sandboxes()
                if container_id.startswith(entry.name)
                or entry.kernel_id == handout.sandbox.manager.kernel_id
            ]
            assert mine and not mine[0].orphan, mine
        finally:
            await handout.sandbox.shutdown()
        assert not container_exists(container_id)

    asyncio.run(take_and_check())


def test_a_restarted_kernel_gets_the_warm_up_again(pool_root: Path, tmp_path: Path) -> None:
    """The prompt told the model `pd` exists; a kernel restarted because a cell ignored its
    interrupt must not make that untrue."""
    from kernelagent.session.sandbox_start import start_session_sandbox

    settings = SandboxSettings(labels=TEST_LABELS, interrupt_grace=1.0)

    async def run() -> None:
        started = await start_session_sandbox(
            settings, tmp_path / "ws", pool=True, warm_up=DEFAULT_WARM_UP
        )
        sandbox = started.sandbox
        try:
            stubborn = (
                "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "x = 1\ntime.sleep(60)"
            )
            result = await sandbox.execute(stubborn, timeout=2)
            assert result.interrupt_ignored and "restarted" in result.detail
            after = await sandbox.execute("print(pd.__name__, 'x' in dir())")
            assert (
                after.outputs[0]["text"] == "pandas False\n"
            )  # warm again; the cell's variable is gone
        finally:
            await sandbox.shutdown()

    asyncio.run(run())
