"""Sandbox benchmarks, each a ratio against a baseline measured in the same process.

    python -m tests.benchmarks.bench_sandbox [--cells 300] [--starts 5]

* cell overhead: ``Sandbox.execute`` vs raw ``jupyter_client`` ``execute_interactive``
  on the same kernel, trivial cell, interleaved, p50;
* cold start: ``Sandbox.start`` (container + kernel ready) vs a raw ``docker run`` of
  the same image with a plain connection file + ``wait_for_ready``;
* warm start: ``SandboxPool.acquire`` p50;
* memory of an idle sandbox (cgroup usage minus page cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from kernelagent.sandbox.docker_provisioner import docker_client
from kernelagent.sandbox.pool import SandboxPool
from kernelagent.sandbox.sandbox import Sandbox, wait_for_kernel
from kernelagent.sandbox.settings import SandboxSettings
from tests.benchmarks.report import Row, ms, p50, write_table


async def cell_overhead(sandbox: Sandbox, cells: int) -> tuple[float, float]:
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(20):  # warm up both paths
        await sandbox.execute("pass")
        await sandbox.client.execute_interactive("pass", output_hook=lambda msg: None)
    for _ in range(cells):
        start = time.perf_counter()
        await sandbox.execute("pass")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        await sandbox.client.execute_interactive("pass", output_hook=lambda msg: None)
        raw.append(time.perf_counter() - start)
    return p50(ours), p50(raw)


async def raw_docker_start(image: str) -> float:
    """docker run + wait_for_ready, with only what any ipc kernel needs."""
    client = docker_client()
    runtime = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    runtime.chmod(0o777)
    host_file, _ = write_connection_file(
        str(runtime / "c.json"), transport="ipc", ip=str(runtime / "ipc")
    )
    info = json.loads(Path(host_file).read_text())
    info["ip"] = "/run/k/ipc"
    (runtime / "k.json").write_text(json.dumps(info))
    os.chown(runtime / "k.json", 1000, 1000)  # ipykernel rewrites its connection file
    start = time.perf_counter()
    container = await asyncio.to_thread(
        client.containers.run,
        image,
        ["python3", "-m", "ipykernel_launcher", "-f", "/run/k/k.json"],
        detach=True,
        network_mode="none",
        environment={"HOME": "/tmp"},
        volumes={str(runtime): {"bind": "/run/k", "mode": "rw"}},
    )
    kc = AsyncKernelClient()
    kc.load_connection_file(host_file)
    kc.start_channels()
    await wait_for_kernel(kc, timeout=60)  # the same readiness check as ours
    elapsed = time.perf_counter() - start
    kc.stop_channels()
    await asyncio.to_thread(container.remove, force=True)
    return elapsed


async def cold_start(settings: SandboxSettings, starts: int) -> tuple[float, float]:
    ours: list[float] = []
    raw: list[float] = []
    await raw_docker_start(settings.image)  # warm the page cache for both
    for _ in range(starts):
        start = time.perf_counter()
        sandbox = await Sandbox.start(settings)
        ours.append(time.perf_counter() - start)
        await sandbox.shutdown()
        raw.append(await raw_docker_start(settings.image))
    return p50(ours), p50(raw)


async def warm_start(settings: SandboxSettings, starts: int) -> float:
    samples: list[float] = []
    async with SandboxPool(settings, size=2) as pool:
        for _ in range(starts):
            await pool.fill()
            start = time.perf_counter()
            sandbox = await pool.acquire()
            samples.append(time.perf_counter() - start)
            await sandbox.shutdown()
    return p50(samples)


def idle_memory_mb(sandbox: Sandbox) -> float:
    container = sandbox.manager.provisioner._container()
    stats = container.stats(stream=False)
    memory = stats["memory_stats"]
    details = memory.get("stats", {})
    cache = details.get(
        "total_inactive_file", details.get("inactive_file", details.get("cache", 0))
    )
    return (memory["usage"] - cache) / 1e6


async def main(cells: int, starts: int) -> Path:
    settings = SandboxSettings()
    sandbox = await Sandbox.start(settings)
    try:
        ours_cell, raw_cell = await cell_overhead(sandbox, cells)
        await asyncio.sleep(2)
        memory = idle_memory_mb(sandbox)
    finally:
        await sandbox.shutdown()
    ours_cold, raw_cold = await cold_start(settings, starts)
    warm = await warm_start(settings, starts)
    rows = [
        Row(
            "trivial cell, p50",
            ms(ours_cell),
            ms(raw_cell) + " (execute_interactive)",
            f"{ours_cell / raw_cell:.3f}",
            "≤ 1.05",
            ours_cell / raw_cell <= 1.05,
        ),
        Row(
            "cold start to ready, p50",
            ms(ours_cold),
            ms(raw_cold) + " (raw docker run)",
            f"{ours_cold / raw_cold:.3f}",
            "≤ 1.1",
            ours_cold / raw_cold <= 1.1,
        ),
        Row("warm-pool start, p50", ms(warm), "", "", "≤ 50 ms", warm <= 0.050),
        Row("memory of an idle sandbox", f"{memory:.1f} MB", "", "", "≤ 80 MB", memory <= 80),
    ]
    return write_table(
        "sandbox",
        "Sandbox benchmarks",
        "python -m tests.benchmarks.bench_sandbox",
        rows,
        notes=f"{cells} interleaved cells per path on one kernel; {starts} cold and warm starts. "
        "The hardened sandbox (read-only root, no network, caps dropped, limits) is compared "
        "with a plain `docker run` of the same image.",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    path = asyncio.run(main(args.cells, args.starts))
    print(path.read_text())
