"""Sessions on a real Ray cluster of three nodes on this machine (a head without the
``kernelagent_sandbox`` resource, two workers with it), with the PostgreSQL store; the
submitters are CLI processes, as a person's would be. Every Ray process stays on
loopback (DESIGN.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import nbformat
import pytest

from kernelagent.machine_files import pid_alive
from kernelagent.session.store import SessionRecord, SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.postgres_fixtures import IN_CI, PostgresServer

LOOPBACK = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
WORKER = {**LOOPBACK, "resources": {"kernelagent_sandbox": 2}}
FAST_FAILURE_DETECTION = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 1000,
}
EXIT_AWAITING_APPROVAL = 4


@dataclass
class RayCluster:
    cluster: Any
    workers: list[Any]
    home: Path
    store_url: str

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KERNELAGENT_HOME": str(self.home),
            "KERNELAGENT_STORE_URL": self.store_url,
            "KERNELAGENT_CLUSTER": self.address,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            **extra,
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kernelagent.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env(),
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "kernelagent.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    def store(self) -> SessionStore:
        return SessionStore(self.home, url=self.store_url)

    def worker_ids(self) -> set[str]:
        return {node.node_id for node in self.workers}


@pytest.fixture(scope="module")
def ray_cluster(
    docker_available: None, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayCluster]:
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        if IN_CI:
            pytest.fail("CI=true but Ray is not installed: pip install -e '.[test]'")
        pytest.skip("Ray is not installed")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for every Ray process started here
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing reported anywhere
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **LOOPBACK,
            "include_dashboard": False,
            "_system_config": FAST_FAILURE_DETECTION,
        },
    )
    try:
        workers = [cluster.add_node(**WORKER) for _ in range(2)]
        cluster.wait_for_nodes()
        home = tmp_path_factory.mktemp("cluster-home")  # the filesystem every node shares
        yield RayCluster(cluster, workers, home, postgres.create_database())
    finally:
        cluster.shutdown()


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
    """The session's container went with its node (only this test's container)."""
    client = docker.from_env()
    for container in client.containers.list(filters={"label": "kernelagent.managed=1"}):
        if container.labels.get("kernelagent.workspace", "") == str(record.workspace):
            container.remove(force=True)
            return
    raise AssertionError(f"no sandbox container for {record.workspace}")


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
