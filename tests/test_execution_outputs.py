"""Cell outputs as nbclient keeps them: display ids across cells, a null transient,
the byte cap; with forged kernel messages and with a real (local) kernel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
import pytest

import kernelagent.api as api
from kernelagent.execution.outputs import KernelOutputs
from kernelagent.execution.run import execute
from kernelagent.replay.replay import ReplayOptions, replay_notebook
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

CREATE_DISPLAY = "from IPython.display import display\nhandle = display('first', display_id=True)"
UPDATE_DISPLAY = "handle.update('second')\nprint('updated')"


class ScriptedKernelClient:
    """Answers every execute with the iopub messages it is given, then idle and a reply."""

    def __init__(self, *contents: tuple[str, dict[str, Any]]) -> None:
        self.contents = contents
        self.iopub: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.shell: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.session = None

    def execute(self, code: str, **_: Any) -> str:
        msg_id = f"request-{code}"
        parent = {"msg_id": msg_id}
        for msg_type, content in self.contents:
            self.iopub.put_nowait(
                {
                    "header": {"msg_type": msg_type},
                    "msg_type": msg_type,
                    "parent_header": parent,
                    "content": content,
                }
            )
        self.iopub.put_nowait(
            {
                "header": {"msg_type": "status"},
                "msg_type": "status",
                "parent_header": parent,
                "content": {"execution_state": "idle"},
            }
        )
        self.shell.put_nowait(
            {"parent_header": parent, "content": {"status": "ok", "execution_count": 1}}
        )
        return msg_id

    async def get_iopub_msg(self, timeout: float) -> dict[str, Any]:
        return await self._get(self.iopub, timeout)

    async def get_shell_msg(self, timeout: float) -> dict[str, Any]:
        return await self._get(self.shell, timeout)

    @staticmethod
    async def _get(queue: asyncio.Queue[dict[str, Any]], timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None


def display(text: str, **content: Any) -> tuple[str, dict[str, Any]]:
    return "display_data", {"data": {"text/plain": text}, "metadata": {}, **content}


async def test_a_null_transient_keeps_the_output() -> None:
    client = ScriptedKernelClient(display("kept", transient=None))
    result = await execute(client, "x")  # type: ignore[arg-type]
    assert result.ok, result.detail
    assert [o["data"]["text/plain"] for o in result.outputs] == ["kept"]
    assert "malformed" not in result.detail


async def test_a_display_updated_by_a_later_cell_changes_the_earlier_one() -> None:
    outputs = KernelOutputs()
    first = await execute(
        ScriptedKernelClient(display("first", transient={"display_id": "d1"})),  # type: ignore[arg-type]
        "a",
        outputs=outputs,
        cell_id="cell-a",
    )
    update = (
        "update_display_data",
        {"data": {"text/plain": "second"}, "metadata": {}, "transient": {"display_id": "d1"}},
    )
    second = await execute(
        ScriptedKernelClient(update, ("stream", {"name": "stdout", "text": "done\n"})),  # type: ignore[arg-type]
        "b",
        outputs=outputs,
        cell_id="cell-b",
    )
    assert first.outputs[0]["data"]["text/plain"] == "first"
    assert second.outputs == [{"output_type": "stream", "name": "stdout", "text": "done\n"}]
    assert list(second.display_updates) == ["cell-a"]
    assert second.display_updates["cell-a"][0]["data"] == {"text/plain": "second"}


async def test_the_byte_cap_still_applies_after_a_clear() -> None:
    streams = [("stream", {"name": "stdout", "text": "x" * 500})] * 3
    client = ScriptedKernelClient(*streams, ("clear_output", {"wait": False}), *streams)
    result = await execute(client, "flood", output_limit=1_000)  # type: ignore[arg-type]
    assert result.truncated and result.dropped_bytes == 2 * (3 * 700 - 1_000)  # both rounds
    assert len(result.outputs[0]["text"]) == 1_000 - 200  # one merged stream, cut to fit
    assert "output truncated" in result.outputs[-1]["text"]


@pytest.fixture
async def local_sandbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    sandbox = await Sandbox.start(SandboxSettings(kind="local"), tmp_path / "workspace")
    try:
        yield sandbox
    finally:
        await sandbox.shutdown()


async def test_a_real_kernel_updates_the_display_of_an_earlier_cell(local_sandbox: Sandbox) -> None:
    first = await local_sandbox.execute(CREATE_DISPLAY, cell_id="one")
    second = await local_sandbox.execute(UPDATE_DISPLAY, cell_id="two")
    assert first.outputs[0]["data"]["text/plain"] == "'first'"
    assert second.ok and second.outputs[0]["text"] == "updated\n"
    assert second.display_updates["one"][0]["data"]["text/plain"] == "'second'"


def test_the_recorded_notebook_shows_the_updated_display(tmp_path: Path) -> None:
    script = [
        ScriptedTurn.python(CREATE_DISPLAY),
        ScriptedTurn.python(UPDATE_DISPLAY),
        ScriptedTurn.final("done"),
    ]
    notebook = tmp_path / "s.ipynb"
    with ScriptedModelServer(script) as server:
        result = api.run(
            "Show and update.",
            sandbox="local",
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=notebook,
        )
    assert result.status == "completed", result.reason
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    assert cells[0].outputs[0]["data"]["text/plain"] == "'second'"
    assert cells[1].outputs[0]["text"] == "updated\n"

    report = asyncio.run(
        replay_notebook(notebook, ReplayOptions(sandbox=SandboxSettings(kind="local")))
    )
    assert [cell.outcome for cell in report.cells] == ["matched", "matched"]
    replayed = [c for c in report.replayed.cells if c.cell_type == "code"]
    assert replayed[0].outputs[0]["data"]["text/plain"] == "'second'"
