"""A real Ray cluster of three nodes on this machine for the cluster tests: a head
without the ``kernelagent_sandbox`` resource and two workers with it, with the PostgreSQL
store and one home directory every node shares. Every Ray process stays on loopback
(DESIGN.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kernelagent.session.store import SessionStore
from tests.postgres_fixtures import IN_CI, PostgresServer

LOOPBACK = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
WORKER = {**LOOPBACK, "resources": {"kernelagent_sandbox": 2}}
FAST_FAILURE_DETECTION = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 1000,
}


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

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kernelagent.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env(**env),
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
    # For every Ray process started here, this one too (before Ray reads it at import:
    # else a driver in this process resolves 127.0.0.1 to the machine's other address).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing reported anywhere
    try:
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster
    except ImportError:
        if IN_CI:
            pytest.fail("CI=true but Ray is not installed: pip install -e '.[test]'")
        pytest.skip("Ray is not installed")
    assert not ray_constants.ENABLE_RAY_CLUSTER, "Ray was imported before the loopback setting"
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
        import ray

        if ray.is_initialized():  # this process joined it (the Jupyter server's tests)
            ray.shutdown()
        cluster.shutdown()


__all__ = ["LOOPBACK", "WORKER", "RayCluster", "ray_cluster"]
