"""Sessions on a real Ray cluster of three nodes on this machine (a head without the
``kernelagent_sandbox`` resource, two workers with it), with the PostgreSQL store; the
submitters are CLI processes, as a person's would be. Every Ray process stays on
loopback (DESIGN.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import nbformat

from kernelagent.machine_files import pid_alive
from kernelagent.session.store import SessionRecord, SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.ray_fixtures import *  # noqa: F403 - the module's Ray cluster (ray_cluster)
from tests.ray_fixtures import WORKER, RayCluster

EXIT_AWAITING_APPROVAL = 4
EXIT_INTERRUPTED = 130


def summary(done: subprocess.CompletedProcess[str] | tuple[str, str]) -> Any:
    """The JSON summary ``run --json`` printed last."""
    stdout = done.stdout if isinstance(done, subprocess.CompletedProcess) else done[0]
    return json.loads(stdout.strip().splitlines()[-1])


def code_cells(path: str | Path) -> list[nbformat.NotebookNode]:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_sessions_are_spread_over_the_nodes(ray_cluster: RayCluster) -> None:
    servers = [
        ScriptedModelServer([ScriptedTurn.python(f"x = {n} * 7\nx"), ScriptedTurn.final(str(n))])
        for n in range(3)
    ]
    for server in servers:
        server.__enter__()
    try:
        runs = [
            ray_cluster.start("run", f"task {n}", "--base-url", server.base_url, "--json")
            for n, server in enumerate(servers)
        ]
        outputs = [run.communicate(timeout=300) for run in runs]
    finally:
        for server in servers:
            server.__exit__(None, None, None)
    assert [run.returncode for run in runs] == [0, 0, 0], [err for _, err in outputs]
    results = [summary(output) for output in outputs]
    assert sorted(r["answer"] for r in results) == ["0", "1", "2"]
    for n, result in enumerate(sorted(results, key=lambda r: r["answer"])):
        assert code_cells(result["notebook"])[0].outputs[0]["data"]["text/plain"] == str(n * 7)
    listed = json.loads(ray_cluster.cli("sessions", "--json").stdout)
    nodes = {s["node"] for s in listed if s["id"] in {r["session_id"] for r in results}}
    assert nodes <= ray_cluster.worker_ids() and len(nodes) >= 2, nodes


def test_an_approval_decided_from_another_process(ray_cluster: RayCluster) -> None:
    script = [
        ScriptedTurn.python("x = 41"),
        ScriptedTurn.shell("echo approved > proof.txt && cat proof.txt"),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as server:
        first = ray_cluster.cli(
            "run", "task", "--approve", "shell", "--base-url", server.base_url, "--json"
        )
        assert first.returncode == EXIT_AWAITING_APPROVAL, first.stderr
        session_id = summary(first)["session_id"]
        assert ray_cluster.store().get(session_id).status == "awaiting_approval"
        second = ray_cluster.cli("approve", session_id, "--json")
    assert second.returncode == 0, second.stderr
    result = summary(second)
    assert result["status"] == "completed" and result["answer"] == "42"
    cells = code_cells(result["notebook"])
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "ok", "ok"]
    assert cells[2].outputs[0]["data"]["text/plain"] == "42"
    assert "approved" in second.stderr  # the events of the node reached this process
    assert ray_cluster.store().get(session_id).node in ray_cluster.worker_ids()


def test_a_lost_node_costs_nothing_recorded(ray_cluster: RayCluster) -> None:
    """The worker running the session dies mid-cell, and its sandbox with it: the session
    goes on on the other worker, its earlier cells' state restored by replay."""
    script = [
        ScriptedTurn.python("x = 41\nopen('first.txt', 'w').write('kept')"),
        ScriptedTurn.python(
            "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.5)"
        ),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as server:
        run = ray_cluster.start("run", "task", "--base-url", server.base_url, "--json")
        record = _wait_for_running_cell(ray_cluster.store(), count=2)
        lost = next(node for node in ray_cluster.workers if node.node_id == record.node)
        ray_cluster.cluster.remove_node(lost, allow_graceful=False)
        _wait_until(lambda: not pid_alive(record.owner_pid or 0), "the node's actor exited")
        _remove_sandbox_of(record)
        ray_cluster.workers.remove(lost)
        stdout, stderr = run.communicate(timeout=300)
        requests = server.completion_requests()
    ray_cluster.workers.append(ray_cluster.cluster.add_node(**WORKER))  # for later tests
    assert run.returncode == 0, stderr
    result = summary((stdout, stderr))
    assert result["status"] == "completed" and result["answer"] == "42"
    cells = code_cells(result["notebook"])
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "interrupted", "ok"]
    assert cells[2].outputs[0]["data"]["text/plain"] == "42"  # x was restored by replay
    assert "interrupted" in json.dumps(requests[2].body)  # the model was told
    moved = ray_cluster.store().get(result["session_id"])
    assert moved.node not in (None, lost.node_id) and moved.status == "completed"
    assert (Path(result["workspace"]) / "first.txt").read_text() == "kept"


def test_a_session_left_on_a_lost_node_by_a_gone_submitter_is_resumed(
    ray_cluster: RayCluster,
) -> None:
    """The submitting process is killed, then the node running its session dies: nobody
    follows the session, so it stays running on a dead node in the store, until
    ``kernelagent resume`` from another process takes it over on a live node."""
    script = [
        ScriptedTurn.python("x = 41"),
        ScriptedTurn.python(
            "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.5)"
        ),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as server:
        run = ray_cluster.start("run", "task", "--base-url", server.base_url, "--json")
        record = _wait_for_running_cell(ray_cluster.store(), count=2)
        run.kill()  # the submitter is gone; its session runs on in its node host
        run.communicate(timeout=60)
        time.sleep(1.0)
        assert ray_cluster.store().get(record.id).status == "running"
        lost = next(node for node in ray_cluster.workers if node.node_id == record.node)
        ray_cluster.cluster.remove_node(lost, allow_graceful=False)
        _wait_until(lambda: not pid_alive(record.owner_pid or 0), "the node's host exited")
        _remove_sandbox_of(record)
        ray_cluster.workers.remove(lost)
        stranded = ray_cluster.store().get(record.id)
        assert (stranded.status, stranded.node) == ("running", lost.node_id)
        resumed = ray_cluster.cli("resume", record.id, "--json")
        requests = server.completion_requests()
    ray_cluster.workers.append(ray_cluster.cluster.add_node(**WORKER))  # for later tests
    assert resumed.returncode == 0, resumed.stderr
    result = summary(resumed)
    assert result["status"] == "completed" and result["answer"] == "42"
    cells = code_cells(result["notebook"])
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "interrupted", "ok"]
    assert cells[2].outputs[0]["data"]["text/plain"] == "42"  # x was restored by replay
    assert "interrupted" in json.dumps(requests[2].body)
    moved = ray_cluster.store().get(record.id)
    assert moved.node not in (None, lost.node_id) and moved.status == "completed"


def test_ctrl_c_in_the_submitter_stops_its_session_on_the_node(ray_cluster: RayCluster) -> None:
    """As a local run: the session is interrupted, its sandbox kept; a resume goes back to
    the node that holds the sandbox and finds the variables intact."""
    script = [
        ScriptedTurn.python("x = 41"),
        ScriptedTurn.python(
            "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.5)"
        ),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as server:
        run = ray_cluster.start("run", "task", "--base-url", server.base_url, "--json")
        record = _wait_for_running_cell(ray_cluster.store(), count=2)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == EXIT_INTERRUPTED, stderr
        _wait_until(
            lambda: ray_cluster.store().get(record.id).status == "interrupted", "interrupted"
        )
        stopped = ray_cluster.store().get(record.id)
        assert stopped.sandbox_state is not None and stopped.node == record.node
        resumed = ray_cluster.cli("resume", record.id, "--json")
        requests = server.completion_requests()
    assert resumed.returncode == 0, resumed.stderr
    result = summary(resumed)
    assert result["status"] == "completed" and result["answer"] == "42"
    cells = code_cells(result["notebook"])
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "interrupted", "ok"]
    assert cells[2].outputs[0]["data"]["text/plain"] == "42"
    told = json.dumps(requests[2].body)
    assert "re-attached to its running sandbox" in told  # no replay: the same kernel
    assert ray_cluster.store().get(record.id).node == record.node  # back to its sandbox


def test_continue_runs_on_a_node(ray_cluster: RayCluster) -> None:
    with ScriptedModelServer([ScriptedTurn.python("x = 41"), ScriptedTurn.final("set")]) as one:
        first = ray_cluster.cli("run", "task", "--base-url", one.base_url, "--json")
    assert first.returncode == 0, first.stderr
    notebook = Path(summary(first)["notebook"])
    script = [ScriptedTurn.python("x + 1"), ScriptedTurn.final("42")]
    with ScriptedModelServer(script) as two:
        done = ray_cluster.cli(
            "continue", str(notebook), "add one", "--base-url", two.base_url, "--json"
        )
        requests = two.completion_requests()
    assert done.returncode == 0, done.stderr
    result = summary(done)
    assert result["status"] == "completed" and result["answer"] == "42"
    continued = Path(result["notebook"])
    assert continued == notebook.with_name(f"{notebook.stem}-continued.ipynb")
    cells = code_cells(continued)
    assert [c.source for c in cells] == ["x = 41", "x + 1"]
    assert cells[1].outputs[0]["data"]["text/plain"] == "42"  # x restored on the node
    metadata = nbformat.read(continued, as_version=4).metadata.kernelagent
    assert metadata.node in ray_cluster.worker_ids()  # placed, not run in this process
    assert "add one" in json.dumps(requests[0].body)
    assert "x + 1" in done.stderr  # the node's events reached this process


def test_a_returning_node_removes_the_sandboxes_its_sessions_left(
    ray_cluster: RayCluster,
) -> None:
    """A session waits for approval on a node that dies; its container stays on this
    machine (one Docker engine plays every node's). When a node host starts on the
    machine again it removes that container, and `kernelagent cleanup` says so too; the
    container of a session waiting on a live node is untouched, and the first session
    still resumes (by replay) when approved."""
    script = [
        ScriptedTurn.python("x = 41"),
        ScriptedTurn.shell("echo approved"),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as left, ScriptedModelServer(script) as live:
        first = ray_cluster.cli("run", "a", "--approve", "shell", "--base-url", left.base_url)
        assert first.returncode == EXIT_AWAITING_APPROVAL, first.stderr
        stranded = next(r for r in ray_cluster.store().list() if r.task == "a")
        lost = next(node for node in ray_cluster.workers if node.node_id == stranded.node)
        ray_cluster.cluster.remove_node(lost, allow_graceful=False)
        ray_cluster.workers.remove(lost)
        second = ray_cluster.cli("run", "b", "--approve", "shell", "--base-url", live.base_url)
        assert second.returncode == EXIT_AWAITING_APPROVAL, second.stderr
        waiting = next(r for r in ray_cluster.store().list() if r.task == "b")
        assert waiting.node in ray_cluster.worker_ids()
        left_behind, kept = _container_of(stranded), _container_of(waiting)
        assert left_behind is not None and kept is not None

        listed = ray_cluster.cli("cleanup", "--dry-run", COLUMNS="300")
        assert listed.returncode == 0, listed.stderr
        rows = listed.stderr.splitlines()
        assert "would remove" in next(row for row in rows if left_behind.name in row), rows
        assert " kept " in next(row for row in rows if kept.name in row), rows
        assert _container_of(stranded) is not None  # nothing removed it yet

        ray_cluster.workers.append(ray_cluster.cluster.add_node(**WORKER))
        with ScriptedModelServer([ScriptedTurn.final("done")]) as third:
            trigger = ray_cluster.cli("run", "c", "--base-url", third.base_url)  # starts hosts
        assert trigger.returncode == 0, trigger.stderr
        _wait_until(lambda: _container_of(stranded) is None, "the left container is removed")
        assert ray_cluster.store().get(stranded.id).sandbox_state is None
        assert _container_of(waiting) is not None  # still running

        approvals = [ray_cluster.start("approve", r.id, "--json") for r in (stranded, waiting)]
        outputs = [approval.communicate(timeout=300) for approval in approvals]
    assert [a.returncode for a in approvals] == [0, 0], [err for _, err in outputs]
    for output in outputs:
        result = summary(output)
        assert result["status"] == "completed" and result["answer"] == "42"
        assert code_cells(result["notebook"])[2].outputs[0]["data"]["text/plain"] == "42"


def _container_of(record: SessionRecord) -> Any:
    """The running container of a session's recorded sandbox, if there is one."""
    kernel_id = (record.sandbox_state or {}).get("kernel_id")
    for container in docker.from_env().containers.list(filters={"label": "kernelagent.managed=1"}):
        if container.labels.get("kernelagent.kernel_id") == kernel_id:
            return container
    return None


def _wait_for_running_cell(store: SessionStore, count: int) -> SessionRecord:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        records = store.list()
        if records and records[0].node and records[0].notebook.exists():
            cells = code_cells(records[0].notebook)
            cell = cells[count - 1] if len(cells) >= count else None
            if cell is not None and cell.metadata.kernelagent.status == "running" and cell.outputs:
                return store.get(records[0].id)
        time.sleep(0.2)
    raise AssertionError("the session never reached its running cell")


def _wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.2)


def _remove_sandbox_of(record: SessionRecord) -> None:
    """The session's container went with its node (only this test's container: the one
    the record names, not the new one its next node may have started already)."""
    container = _container_of(record)
    assert container is not None, f"no sandbox container for {record.id}"
    container.remove(force=True)


def test_without_a_sandbox_node_a_session_is_refused_at_once(ray_cluster: RayCluster) -> None:
    """Last in this module: the workers leave the cluster, only the head stays."""
    before = {record.id for record in ray_cluster.store().list()}
    for node in list(ray_cluster.workers):
        ray_cluster.cluster.remove_node(node, allow_graceful=True)
        ray_cluster.workers.remove(node)
    with ScriptedModelServer([ScriptedTurn.final("never")]) as server:
        done = ray_cluster.cli("run", "task", "--base-url", server.base_url)
    assert done.returncode == 1, done.stderr
    assert "no node of the Ray cluster" in done.stderr and "kernelagent_sandbox" in done.stderr
    assert "ray start --address" in done.stderr and "Traceback" not in done.stderr
    assert {record.id for record in ray_cluster.store().list()} == before


def test_an_unreachable_cluster_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "KERNELAGENT_HOME": str(tmp_path / "home")}
    env.pop("KERNELAGENT_STORE_URL", None)
    with ScriptedModelServer([ScriptedTurn.final("never")]) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "--cluster",
                "127.0.0.1:9",
                "run",
                "task",
                "--base-url",
                server.base_url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert done.returncode == 1, done.stderr
    first, hint = done.stderr.strip().splitlines()[-2:]
    assert first.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")
    assert "KERNELAGENT_CLUSTER" in hint and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "sessions").exists()
