"""Sessions on a Ray cluster with a PostgreSQL store vs in this process with SQLite.

    python -m tests.benchmarks.bench_cluster [--sessions 16 32] [--cells 20]

On this machine: a throwaway PostgreSQL server and a Ray cluster of a head and two
workers (``kernelagent_sandbox``), all on loopback (DESIGN.md), one Docker engine.

* overhead: N concurrent sessions of the scripted model (3 small cells each), placed on
  the cluster (node hosts + PostgreSQL index) vs run in this process (SQLite index): the
  mean wall time per session and the time until all N are done (goal ≤ 1.10 at 16);
* node loss: a session of ``--cells`` recorded cells whose worker is removed while its
  next cell runs (and its container with it): the time from the removal to the model's
  next request from the session's new node host on the other worker, vs restoring those
  cells in a fresh sandbox in-process today (goal ≤ restore + 2 s). Ray notices the dead
  node by missed health checks (here every 1 s, 3 missed: ~3 s of the figure, shown apart).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kernelagent.api import arun, build_config
from kernelagent.notebook.recorder import load_notebook
from kernelagent.replay.restore import restore_state
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.benchmarks.bench_restore import SALES, analysis_cells
from tests.benchmarks.report import Row, ms, write_table
from tests.postgres_fixtures import PostgresServer, postgres_bin

HEALTH = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 1000,
}
LONG_CELL = "import time\nfor i in range(120):\n    print(i, flush=True)\n    time.sleep(0.5)"


def small_session(n: int) -> list[ScriptedTurn]:
    return [
        ScriptedTurn.python(f"x = {n}"),
        ScriptedTurn.python("import statistics\nvalues = [x * i for i in range(100)]"),
        ScriptedTurn.python("statistics.mean(values)"),
        ScriptedTurn.final(str(n)),
    ]


async def timed_sessions(
    label: str, count: int, store: SessionStore, cluster: str, tmp: Path
) -> tuple[list[float], float, Counter[str]]:
    """``count`` sessions at once; (each one's wall time, time until all ended, per node)."""
    servers = [ScriptedModelServer(small_session(n)) for n in range(count)]
    for server in servers:
        server.__enter__()

    async def one(n: int) -> float:
        start = time.perf_counter()
        config = build_config(model="scripted", base_url=servers[n].base_url)
        result = await arun(
            f"{label} {n}",
            config=config,
            store=store,
            cluster=cluster,
            workspace=tmp / f"{label}-ws{n}",
            notebook=tmp / f"{label}-s{n}.ipynb",
        )
        assert result.status == "completed" and result.answer == str(n), result.reason
        return time.perf_counter() - start

    try:
        start = time.perf_counter()
        walls = await asyncio.gather(*(one(n) for n in range(count)))
        makespan = time.perf_counter() - start
    finally:
        for server in servers:
            server.__exit__(None, None, None)
    nodes = Counter(
        str(record.node) for record in store.list() if record.task.startswith(label + " ")
    )
    return list(walls), makespan, nodes


async def node_loss(cluster: Any, workers: list[Any], store: SessionStore, cells: int, tmp: Path):
    """(resume time after the node's removal, of it Ray's failure detection, in-process
    restore time of the same cells)."""
    import ray

    turns = [ScriptedTurn.python(code) for code in analysis_cells(cells)]
    turns += [
        ScriptedTurn.python(LONG_CELL),
        ScriptedTurn.python("len(df)"),
        ScriptedTurn.final("ok"),
    ]
    with ScriptedModelServer(turns) as server:
        config = build_config(model="scripted", base_url=server.base_url, max_steps=cells + 5)
        run = asyncio.create_task(
            arun(
                "node loss",
                data=[SALES],
                config=config,
                store=store,
                cluster=cluster.address,
                workspace=tmp / "loss-ws",
                notebook=tmp / "loss.ipynb",
            )
        )
        while len(server.completion_requests()) < cells + 1:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # the long cell runs
        record = next(r for r in store.list() if r.task == "node loss")
        lost = next(node for node in workers if node.node_id == record.node)
        removed = time.perf_counter()
        cluster.remove_node(lost, allow_graceful=False)
        discard_container(record)  # it went with its node
        detected = None
        while len(server.completion_requests()) < cells + 2:
            if detected is None and not any(
                n["NodeID"] == lost.node_id and n["Alive"] for n in ray.nodes()
            ):
                detected = time.perf_counter() - removed
            await asyncio.sleep(0.05)
        resumed = time.perf_counter() - removed
        result = await run
        assert result.status == "completed", result.reason
    start = time.perf_counter()
    sandbox = await Sandbox.start(workspace=tmp / "restore-ws")
    shutil.copy(SALES, tmp / "restore-ws" / "sales.csv")
    report = await restore_state(load_notebook(tmp / "loss.ipynb"), sandbox)
    restore = time.perf_counter() - start
    await sandbox.shutdown()
    assert report.ok, report.summary()
    return resumed, detected or resumed, restore


def discard_container(record: Any) -> None:
    """The container the record names (not one its next node started since)."""
    import docker

    kernel_id = (record.sandbox_state or {}).get("kernel_id")
    for container in docker.from_env().containers.list(filters={"label": "kernelagent.managed=1"}):
        if container.labels.get("kernelagent.kernel_id") == kernel_id:
            container.remove(force=True)


async def main(counts: list[int], cells: int) -> Path:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("KERNELAGENT_POOL", "0")
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    os.environ["KERNELAGENT_HOME"] = str(tmp / "home")
    bin_dir = postgres_bin()
    assert bin_dir is not None, "install Debian's postgresql (scripts/setup.sh --test)"
    postgres = PostgresServer(bin_dir)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "_system_config": HEALTH,
        },
    )
    worker = {
        "num_cpus": 1,
        "node_ip_address": "127.0.0.1",
        "resources": {"kernelagent_sandbox": max(counts)},
    }
    load_before = os.getloadavg()
    runs: dict[int, dict[str, Any]] = {}
    try:
        workers = [cluster.add_node(**worker) for _ in range(2)]
        cluster.wait_for_nodes()
        local_store = SessionStore(tmp / "home", url=f"sqlite://{tmp / 'local.db'}")
        ray_store = SessionStore(tmp / "home", url=postgres.create_database())
        cold, _, _ = await timed_sessions("warm-up", 2, ray_store, cluster.address, tmp)
        for count in counts:
            local_walls, local_span, _ = await timed_sessions(
                f"local{count}", count, local_store, "", tmp
            )
            ray_walls, ray_span, per_node = await timed_sessions(
                f"placed{count}", count, ray_store, cluster.address, tmp
            )
            runs[count] = {
                "local": (local_walls, local_span),
                "placed": (ray_walls, ray_span),
                "nodes": per_node,
            }
        pg_walls, _, _ = await timed_sessions("local-pg", counts[0], ray_store, "", tmp)
        (one_local,), _, _ = await timed_sessions("one-local", 1, local_store, "", tmp)
        (one_placed,), _, _ = await timed_sessions("one-placed", 1, ray_store, cluster.address, tmp)
        resumed, detected, restore = await node_loss(cluster, workers, ray_store, cells, tmp)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
        postgres.stop()
    load_after = os.getloadavg()
    rows: list[Row] = []
    for count, run in runs.items():
        (local_walls, local_span), (ray_walls, ray_span) = run["local"], run["placed"]
        local_mean, ray_mean = statistics.mean(local_walls), statistics.mean(ray_walls)
        target = "≤ 1.10" if count == 16 else ""
        rows += [
            Row(
                f"mean wall time of {count} concurrent sessions",
                ms(ray_mean),
                f"{ms(local_mean)} in-process + SQLite",
                f"{ray_mean / local_mean:.2f}",
                target,
                ray_mean / local_mean <= 1.10 if target else None,
            ),
            Row(
                f"until all {count} sessions ended",
                ms(ray_span),
                f"{ms(local_span)} in-process + SQLite",
                f"{ray_span / local_span:.2f}",
                target,
                ray_span / local_span <= 1.10 if target else None,
            ),
        ]
    first_local = statistics.mean(runs[counts[0]]["local"][0])
    rows += [
        Row(
            f"mean wall time of {counts[0]} concurrent sessions, in-process + PostgreSQL",
            ms(statistics.mean(pg_walls)),
            f"{ms(first_local)} in-process + SQLite",
            f"{statistics.mean(pg_walls) / first_local:.2f}",
            "",
            None,
        ),
        Row(
            "one session alone, node hosts running (the cost of placing it)",
            ms(one_placed),
            f"{ms(one_local)} in-process + SQLite",
            f"+{one_placed - one_local:.2f} s",
            "",
            None,
        ),
        Row(
            "first 2 sessions on a fresh cluster (they start the node hosts)",
            ms(statistics.mean(cold)),
            f"{ms(one_local)} one in-process + SQLite",
            f"+{statistics.mean(cold) - one_local:.2f} s",
            "",
            None,
        ),
        Row(
            f"resume after node loss, {cells}-cell session",
            ms(resumed),
            f"{ms(restore)} restore in-process today",
            f"+{resumed - restore:.2f} s",
            "≤ restore + 2 s",
            resumed <= restore + 2.0,
        ),
        Row(
            "of it: until Ray marks the node dead (health checks 1 s × 3)",
            ms(detected),
            "",
            "",
            "",
            None,
        ),
        Row(
            "of it: from the node marked dead to the model's next request",
            ms(resumed - detected),
            f"{ms(restore)} restore in-process today",
            f"+{resumed - detected - restore:.2f} s",
            "≤ restore + 2 s",
            resumed - detected <= restore + 2.0,
        ),
    ]
    biggest = runs[max(counts)]
    placed = {node: n for node, n in biggest["nodes"].items() if node != "None"}
    per_node_text = ", ".join(f"{n} sessions on {node[:8]}" for node, n in sorted(placed.items()))
    rate = len(biggest["placed"][0]) / biggest["placed"][1] / max(1, len(placed))
    notes = (
        f"One machine (2 cores, one Docker engine) plays a head and two workers, so the two "
        f"workers share the same cores and the ratios show Ray's and PostgreSQL's overhead, not "
        f"a cluster's capacity. Each worker runs one node host: a long-lived async Ray actor "
        f"that runs all of that node's sessions in its event loop, so Ray, kernelagent's "
        f"session stack and the model client are imported once per node (the 'fresh cluster' "
        f"row), not once per session. Placement of the {max(counts)}: {per_node_text}; each "
        f"worker ran its sessions at {rate:.2f} sessions/s here. The sandboxes and the cells "
        f"dominate a session's time and run on its node, so throughput grows with the nodes "
        f"(about that per-node rate times the number of workers) until the shared PostgreSQL "
        f"and filesystem are the limit: a session writes its index row a few times per cell. "
        f"Resume after node loss: Ray notices the dead node by missed health checks (a cluster "
        f"setting, here every 1 s with 3 missed), the submitter's follow call fails, it places "
        f"the session on the other worker's node host (already running), which claims it in "
        f"the store, starts a sandbox and replays the {cells} cells. Load average on the 2 "
        f"cores: {load_before[0]:.1f} before, {load_after[0]:.1f} after (other work shared "
        f"the machine). Each row is one run."
    )
    command = "python -m tests.benchmarks.bench_cluster --sessions " + " ".join(map(str, counts))
    return write_table(
        "cluster",
        "Sessions on a Ray cluster with PostgreSQL vs in-process with SQLite",
        f"{command} --cells {cells}",
        rows,
        notes,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--cells", type=int, default=20)
    arguments = parser.parse_args()
    print(asyncio.run(main(arguments.sessions, arguments.cells)).read_text())
