"""The sandbox as other Jupyter tools see it: kernelspec + nbclient, cleanup, warm pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from kernelagent.sandbox.maintenance import install_kernelspec, list_sandboxes, remove_sandboxes
from kernelagent.sandbox.pool import SandboxPool
from kernelagent.sandbox.settings import SandboxSettings


async def test_nbclient_runs_a_notebook_with_the_installed_kernelspec(
    docker_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "prefix"
    install_kernelspec(SandboxSettings(), "kernelagent-test", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    notebook_dir = tmp_path / "project"
    notebook_dir.mkdir()
    (notebook_dir / "numbers.csv").write_text("n\n1\n2\n3\n")
    notebook = new_notebook(
        cells=[
            new_code_cell("import os, pandas as pd\ntotal = pd.read_csv('numbers.csv').n.sum()"),
            new_code_cell("print(int(total), os.getcwd(), os.getuid() != 0)"),
        ]
    )
    client = NotebookClient(
        notebook,
        kernel_name="kernelagent-test",
        timeout=60,
        resources={"metadata": {"path": str(notebook_dir)}},
    )
    await client.async_execute()
    assert notebook.cells[1].outputs[0]["text"].strip() == "6 /workspace True"
    nbformat.validate(notebook)


def test_cleanup_removes_orphans_only(docker_available: None, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from kernelagent.sandbox.sandbox import Sandbox
        async def main():
            sandbox = await Sandbox.start(workspace={str(tmp_path)!r})
            print(sandbox.manager.kernel_id, flush=True)
            os._exit(0)
        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    orphan_id = done.stdout.strip().splitlines()[-1]
    found = {s.kernel_id: s for s in list_sandboxes()}
    assert found[orphan_id].orphan and "is gone" in found[orphan_id].why
    kept = {s.kernel_id: s for s in list_sandboxes(keep_kernel_ids=frozenset({orphan_id}))}
    assert not kept[orphan_id].orphan
    remove_sandboxes([found[orphan_id]])
    assert orphan_id not in {s.kernel_id for s in list_sandboxes()}


async def test_warm_pool_hands_out_unshared_sandboxes(
    docker_available: None, tmp_path: Path
) -> None:
    async with SandboxPool(SandboxSettings(), size=2, workspace_root=tmp_path) as pool:
        assert pool.ready_count == 2
        first = await pool.acquire()
        second = await pool.acquire()
        try:
            assert first.manager.kernel_id != second.manager.kernel_id
            assert first.workspace != second.workspace
            await first.execute("secret = 'only mine'")
            result = await second.execute("'secret' in dir()")
            assert result.outputs[0]["data"]["text/plain"] == "False"
        finally:
            await first.shutdown()
            await second.shutdown()
        await pool.fill()
        assert pool.ready_count == 2
