"""Resource exhaustion: processes, memory, disk, output. The host must not notice."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from kernelagent.execution.result import ExecutionResult
from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import container_attrs, peak_rss, probe, short
from tests.adversarial.conftest import Record, StartSandbox

MB = 1 << 20


def _kept_bytes(result: ExecutionResult) -> int:
    total = 0
    for output in result.outputs:
        if output["output_type"] == "stream":
            total += len(output["text"])
        else:
            total += sum(len(str(v)) for v in output.get("data", {}).values())
    return total


async def test_fork_bomb_is_bounded(start_sandbox: StartSandbox, record: Record) -> None:
    """Bash fork bomb `:(){ :|:& };:` (pids_limit=64)"""
    record(
        expected="the pids limit caps it at 64 tasks; the cell times out and the kernel survives "
        "(or its death is reported); the host still forks; a NEW sandbox starts and works meanwhile"
    )
    bomb = await start_sandbox("bomb", pids_limit=64, mem_limit="512m")
    result = await bomb.execute("%%bash\n:(){ :|:& };:\n", timeout=5)
    record(observed=f"bomb cell: {short(result)}")
    stats = await asyncio.to_thread(
        lambda: bomb.manager.provisioner._container().stats(stream=False)  # type: ignore[union-attr]
    )
    pids = stats.get("pids_stats", {})
    record.observe(f"container tasks: {pids.get('current')} (limit {pids.get('limit')})")

    started = time.monotonic()
    host = await asyncio.to_thread(subprocess.run, ["true"], check=False, timeout=10)
    host_fork = time.monotonic() - started
    record.observe(f"host fork+exec: rc={host.returncode} in {host_fork:.2f} s")

    started = time.monotonic()
    other = await start_sandbox("other")
    answer = await other.execute("6 * 7", timeout=30)
    fresh = time.monotonic() - started
    record.observe(f"new sandbox during the bomb: {short(answer)} in {fresh:.1f} s")

    after = await bomb.execute("'kernel alive'", timeout=60)
    record.observe(f"bombed kernel afterwards: {short(after)}")

    assert result.status in ("timeout", "kernel_died")
    assert pids.get("current") is not None and pids["current"] <= 64
    assert host.returncode == 0 and host_fork < 5
    assert answer.ok and answer.outputs[0]["data"]["text/plain"] == "42"
    assert after.ok or (after.status == "kernel_died" and after.detail)


async def test_memory_bomb_is_oom_killed_and_reported(
    start_sandbox: StartSandbox, record: Record
) -> None:
    """Allocate and touch memory without bound (mem_limit=256m)"""
    record(
        expected="the kernel is OOM-killed; result.status=kernel_died, detail and death_reason() "
        "start with 'OOM-killed'; host memory unaffected; restart gives a working kernel"
    )
    box = await start_sandbox(mem_limit="256m")
    async with peak_rss() as host:
        result = await box.execute(
            "hog = []\nwhile True:\n    hog.append(b'x' * (16 << 20))", timeout=60
        )
    reason = await box.death_reason()
    oom_flag = container_attrs(box)["State"].get("OOMKilled")
    record(
        observed=f"{short(result)}; death_reason()={reason!r}; Docker OOMKilled={oom_flag}; "
        f"host RSS growth {host['growth']:.0f} MB"
    )
    assert result.status == "kernel_died"
    assert result.detail.startswith("OOM-killed")
    assert reason is not None and reason.startswith("OOM-killed")
    assert host["growth"] < 100
    await box.restart()
    again = await box.execute("1 + 1", timeout=20)
    record.observe(f"after restart: {short(again)}")
    assert again.ok


async def test_tmpfs_fill_stops_at_its_size(start_sandbox: StartSandbox, record: Record) -> None:
    """Fill /tmp (tmpfs_size=16m) with 1 MB writes until it fails"""
    record(expected="ENOSPC at ~16 MB; the kernel keeps working")
    box = await start_sandbox(tmpfs_size="16m")
    out = await probe(
        box,
        """
        import errno, os
        written = 0
        try:
            with open('/tmp/fill', 'wb') as f:
                while written < 1024 * 2**20:
                    f.write(b'\\0' * 2**20); f.flush(); written += 2**20
            out['error'] = None
        except OSError as e:
            out['error'] = errno.errorcode[e.errno]
        out['size_mb'] = os.path.getsize('/tmp/fill') / 2**20
        os.remove('/tmp/fill')
        """,
    )
    record(
        observed=f"write stopped with {out['error']} after {out['size_mb']:.1f} MB; kernel alive"
    )
    assert out["error"] == "ENOSPC"
    assert out["size_mb"] <= 16


async def test_dev_shm_fill_stops_at_its_size(sandbox: Sandbox, record: Record) -> None:
    """Fill /dev/shm (Docker's default 64 MB shm, also writable) until it fails"""
    record(expected="ENOSPC at ~64 MB (its pages also count against the memory limit)")
    out = await probe(
        sandbox,
        """
        import errno, os
        written = 0
        try:
            with open('/dev/shm/fill', 'wb') as f:
                while written < 1024 * 2**20:
                    f.write(b'\\0' * 2**20); f.flush(); written += 2**20
            out['error'] = None
        except OSError as e:
            out['error'] = errno.errorcode[e.errno]
        out['size_mb'] = os.path.getsize('/dev/shm/fill') / 2**20
        os.remove('/dev/shm/fill')
        """,
    )
    record(observed=f"write stopped with {out['error']} after {out['size_mb']:.1f} MB")
    assert out["error"] == "ENOSPC"
    assert out["size_mb"] <= 64


async def test_workspace_fill_has_no_quota(sandbox: Sandbox, record: Record) -> None:
    """Write 200 MB into /workspace, then stop (bounded on purpose)"""
    record(
        expected="NO QUOTA (documented limitation): the workspace is a host directory, so the 200 "
        "MB "
        "write succeeds and only the host's free disk bounds it; the file is removed afterwards"
    )
    free_gb = shutil.disk_usage(sandbox.workspace).free / 2**30
    if free_gb < 2:
        pytest.skip(f"only {free_gb:.1f} GB free on the host; not filling the workspace")
    try:
        out = await probe(
            sandbox,
            """
            import os
            with open('/workspace/fill.bin', 'wb') as f:
                for _ in range(200):
                    f.write(b'\\0' * 2**20)
            out['size_mb'] = os.path.getsize('/workspace/fill.bin') / 2**20
            """,
            timeout=60,
        )
        host_size = (sandbox.workspace / "fill.bin").stat().st_size / MB
        record(
            observed=f"wrote {out['size_mb']:.0f} MB without error; the host sees {host_size:.0f} "
            f"MB in "
            f"{sandbox.workspace.name}/ (host free disk {free_gb:.0f} GB before)"
        )
        assert out["size_mb"] == 200 and host_size == 200
    finally:
        (sandbox.workspace / "fill.bin").unlink(missing_ok=True)


async def test_print_flood_1gb_is_capped(sandbox: Sandbox, record: Record) -> None:
    """Print 1 GiB of text (1M lines of 1 KiB)"""
    record(
        expected="result.truncated; kept output <= output_limit (2 MB); the host process's memory "
        "stays bounded (growth well under the flood size)"
    )
    async with peak_rss() as host:
        started = time.monotonic()
        result = await sandbox.execute(
            "line = 'x' * 1023\nfor _ in range(1 << 20):\n    print(line)", timeout=300
        )
        took = time.monotonic() - started
    kept = _kept_bytes(result)
    record(
        observed=f"{short(result)}, truncated={result.truncated}, kept {kept / MB:.2f} MB, dropped "
        f"{result.dropped_bytes / MB:.0f} MB, host RSS growth {host['growth']:.0f} MB, {took:.0f} s"
    )
    assert result.ok and result.truncated
    assert kept <= sandbox.settings.output_limit + 1000
    assert result.dropped_bytes > 1000 * MB
    assert host["growth"] < 768  # ZMQ queues part of the flood; bounded, well under 1 GiB


async def test_print_flood_big_chunks(sandbox: Sandbox, record: Record) -> None:
    """Write 1 GiB to stdout in 1 MiB chunks (faster than ipykernel flushes)"""
    record(
        expected="ipykernel buffers between flushes, so the kernel may outgrow its memory: either "
        "capped (truncated) or OOM-killed and reported; host memory unaffected"
    )
    async with peak_rss() as host:
        result = await sandbox.execute(
            "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    "
            "sys.stdout.write(chunk)",
            timeout=120,
        )
    record(
        observed=f"{short(result)}, truncated={result.truncated}, host RSS growth "
        f"{host['growth']:.0f} MB"
    )
    assert (result.ok and result.truncated) or (
        result.status == "kernel_died" and result.detail.startswith("OOM-killed")
    )
    assert host["growth"] < 768  # ZMQ queues part of the flood; bounded, well under 1 GiB


async def test_single_huge_output_message(sandbox: Sandbox, record: Record) -> None:
    """Publish one 150 MB display_data message"""
    record(
        expected="truncated to output_limit; the message is decoded before the cap applies, so "
        "host "
        "memory grows by about one message (bounded by the sandbox memory limit), not more"
    )
    async with peak_rss() as host:
        result = await sandbox.execute(
            "from IPython.display import display\ndisplay({'text/plain': 'x' * 150_000_000}, "
            "raw=True)",
            timeout=120,
        )
    kept = _kept_bytes(result)
    record(
        observed=f"{short(result)}, truncated={result.truncated}, kept {kept / MB:.2f} MB, "
        f"host RSS growth {host['growth']:.0f} MB"
    )
    assert result.ok
    assert kept <= sandbox.settings.output_limit + 1000
    assert host["growth"] < 450


async def test_display_flood_is_capped(sandbox: Sandbox, record: Record) -> None:
    """Publish 5000 display_data outputs of 2 KB each (text/plain + text/html)"""
    record(expected="result.truncated; kept payload <= output_limit; the kernel keeps working")
    result = await sandbox.execute(
        "from IPython.display import display\n"
        "for i in range(5000):\n"
        "    display({'text/plain': 'x' * 1000, 'text/html': '<b>' + 'y' * 1000 + '</b>'}, "
        "raw=True)",
        timeout=20,
    )
    kept = _kept_bytes(result)
    record(
        observed=f"{short(result)}, truncated={result.truncated}, {len(result.outputs)} outputs "
        f"kept "
        f"({kept / MB:.2f} MB), dropped {result.dropped_bytes / MB:.1f} MB"
    )
    status, truncated = result.status, result.truncated
    assert status == "ok", "the flood cell did not finish cleanly (see the detail)"
    assert truncated
    assert kept <= sandbox.settings.output_limit + 1000
    assert len(result.outputs) < 5000


async def test_empty_display_flood_is_capped(start_sandbox: StartSandbox, record: Record) -> None:
    """Publish 5000 display_data outputs with empty payloads (output_limit=20 kB)"""
    record(
        expected="capped too: every output costs something against the limit, so result.truncated "
        "and at most 2500 outputs are kept (the number of outputs is bounded, not only their bytes)"
    )
    box = await start_sandbox(output_limit=20_000)
    async with peak_rss() as host:
        result = await box.execute(
            "from IPython.display import display\n"
            "for i in range(5000):\n"
            "    display({'text/plain': ''}, raw=True)",
            timeout=20,
        )
    kept_outputs, truncated = len(result.outputs), result.truncated
    lost_silently = (
        " (the rest lost silently: ZMQ high-water mark)"
        if 0 < kept_outputs < 5000 and not truncated
        else ""
    )
    record(
        observed=f"{short(result)}, truncated={truncated}, {kept_outputs} of 5000 outputs kept"
        f"{lost_silently}, "
        f"host RSS growth {host['growth']:.0f} MB"
    )
    assert result.ok
    assert truncated, "empty outputs are never capped: the cap counts payload bytes only"
    assert kept_outputs <= 2_501
