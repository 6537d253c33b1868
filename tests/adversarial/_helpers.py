"""Helpers shared by the adversarial tests."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kernelagent.execution.result import ExecutionResult
from kernelagent.sandbox.sandbox import Sandbox

MARKER = "@@ADVERSARIAL-RESULT@@"


async def probe(sandbox: Sandbox, body: str, timeout: float = 20) -> dict[str, Any]:
    """Run ``body`` in the kernel; it fills the dict ``out``, which comes back parsed.

    The cell must succeed: a probe is an observation, the attack's outcome is in ``out``.
    """
    code = (
        "import json as _json\nout = {}\n"
        + textwrap.dedent(body).strip("\n")
        + f"\nprint({MARKER!r} + _json.dumps(out, default=repr))\n"
    )
    result = await sandbox.execute(code, timeout=timeout)
    assert result.ok, f"probe cell failed: {result.status} {result.detail}\n{result.text()[-3000:]}"
    for line in reversed(result.text().splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise AssertionError(f"probe printed no result:\n{result.text()[-3000:]}")


def short(result: ExecutionResult) -> str:
    """status and detail of a result, for the observed column."""
    detail = f", detail={result.detail!r}" if result.detail else ""
    return f"status={result.status}{detail}"


def rss_mb() -> float:
    """Resident memory of this (host) process in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@asynccontextmanager
async def peak_rss() -> AsyncIterator[dict[str, float]]:
    """Samples this process's RSS while the block runs: yields {'base', 'peak'} (MB)."""
    stats = {"base": rss_mb(), "peak": rss_mb()}

    async def sample() -> None:
        while True:
            stats["peak"] = max(stats["peak"], rss_mb())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(sample())
    try:
        yield stats
    finally:
        task.cancel()
        stats["peak"] = max(stats["peak"], rss_mb())
        stats["growth"] = stats["peak"] - stats["base"]


def container_attrs(sandbox: Sandbox) -> dict[str, Any]:
    container = sandbox.manager.provisioner._container()  # type: ignore[union-attr]
    assert container is not None, "the sandbox container is gone"
    return container.attrs
