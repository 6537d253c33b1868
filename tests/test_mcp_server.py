"""``kernelagent mcp`` driven by the MCP SDK's own client: a recorded session in the hardened
sandbox per connection, over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import httpx
import nbformat
import pytest
import pytest_asyncio

from kernelagent.session.store import SessionStore
from tests.mcp_fixtures import (
    REPO,
    SECRET,
    Connection,
    free_port,
    http_session,
    images_of,
    mcp_command,
    server_env,
    stdio_session,
    stop_sandboxes,
    text_of,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("docker_available")]

APPROVAL_RULE = "NEEDS_APPROVAL"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-home")


@pytest.fixture(scope="module")
def server_log(home: Path) -> IO[str]:
    with open(home / "server.log", "w") as log:
        yield log


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(
    home: Path, server_log: IO[str], docker_available: None
) -> AsyncIterator[Connection]:
    """One stdio server (one session) shared by the module's tests."""
    options = ("--approve-pattern", APPROVAL_RULE)
    async with Connection(lambda: stdio_session(home, server_log, *options)) as connection:
        yield connection
    await stop_sandboxes(home)


async def session_info(connection: Connection) -> dict:
    return json.loads(await connection.read("kernelagent://session/info"))


def kernelagent(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kernelagent.cli", *args]
    return subprocess.run(
        command, env=server_env(home), cwd=REPO, capture_output=True, text=True, timeout=120
    )


async def test_state_persists_between_calls(client: Connection) -> None:
    first = await client.call("python", code="answer = 41")
    assert not first.isError, text_of(first)
    second = await client.call("python", code="answer + 1")
    assert "42" in text_of(second)
    failed = await client.call("python", code="undefined_name")
    assert failed.isError and "NameError" in text_of(failed)


async def test_the_kernel_is_the_hardened_sandbox(client: Connection) -> None:
    code = (
        "import os, socket\n"
        "print('interfaces', sorted(name for _, name in socket.if_nameindex()))\n"
        "print('uid', os.getuid())\n"
        f"print('secret', any({SECRET!r} in value for value in os.environ.values()))\n"
        "print('cwd', os.getcwd())"
    )
    text = text_of(await client.call("python", code=code))
    assert "interfaces ['lo']" in text
    assert "uid 0" not in text and "uid " in text
    assert "secret False" in text
    assert "cwd /workspace" in text


async def test_a_plot_comes_back_as_an_image(client: Connection) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]); plt.title('revenue'); plt.show()"
    result = await client.call("python", code=code)
    images = images_of(result)
    assert not result.isError, text_of(result)
    assert len(images) == 1 and images[0].startswith(b"\x89PNG\r\n\x1a\n")


async def test_files_and_shell_stay_in_the_workspace(client: Connection) -> None:
    written = await client.call("write_file", path="notes/todo.txt", content="check the totals\n")
    assert "wrote notes/todo.txt" in text_of(written)
    shell = await client.call("shell", command="cat notes/todo.txt && whoami")
    assert "check the totals" in text_of(shell)
    assert "notes/todo.txt" in text_of(await client.call("list_files"))
    read = await client.call("read_file", path="/workspace/notes/todo.txt")
    assert text_of(read) == "check the totals\n"
    for outside in ("../sessions.db", "/etc/passwd", "notes/../../x"):
        refused = await client.call("read_file", path=outside)
        assert refused.isError and "outside the session's workspace" in text_of(refused)
    link = await client.call("shell", command="ln -s /etc/passwd escape")
    assert not link.isError
    refused = await client.call("read_file", path="escape")
    assert refused.isError and "outside the session's workspace" in text_of(refused)


async def test_an_action_that_needs_approval_waits_for_a_person(
    client: Connection, home: Path
) -> None:
    session_id = (await session_info(client))["session_id"]
    command = f"echo {APPROVAL_RULE} ran"
    waiting = await client.call("shell", command=command)
    assert f"waiting for approval: kernelagent approve {session_id}" in text_of(waiting)
    record = SessionStore(home).get(session_id)
    assert record.status == "awaiting_approval" and record.pending is not None
    assert "ran" not in text_of(await client.call("shell", command=command))  # still waiting
    other = await client.call("python", code="print('meanwhile', answer)")
    assert "meanwhile 41" in text_of(other)
    approved = kernelagent(home, "approve", session_id)
    assert approved.returncode == 0, approved.stderr
    ran = await client.call("shell", command=command)
    assert f"{APPROVAL_RULE} ran" in text_of(ran), text_of(ran)
    assert SessionStore(home).get(session_id).status == "running"

    refused = f"echo {APPROVAL_RULE} again"
    assert "waiting for approval" in text_of(await client.call("shell", command=refused))
    rejected = kernelagent(home, "reject", session_id, "--reason", "not today")
    assert rejected.returncode == 0, rejected.stderr
    told = await client.call("shell", command=refused)
    assert told.isError and "rejected by" in text_of(told) and "not today" in text_of(told)
    assert SessionStore(home).get(session_id).status == "running"


async def test_the_session_notebook_is_recorded_and_listed(client: Connection, home: Path) -> None:
    info = await session_info(client)
    recorded = nbformat.reads(await client.read("kernelagent://session/notebook"), as_version=4)
    sources = [cell.source for cell in recorded.cells if cell.cell_type == "code"]
    assert "answer = 41" in sources and "answer + 1" in sources
    assert any("cat notes/todo.txt" in source for source in sources)
    on_disk = nbformat.read(info["notebook"], as_version=4)
    assert [cell.source for cell in on_disk.cells if cell.cell_type == "code"] == sources
    approval = next(c for c in on_disk.cells if APPROVAL_RULE in c.source)
    assert [step["decision"] for step in approval.metadata.kernelagent.approval] == [
        "requested",
        "approved",
    ]
    listed = json.loads(kernelagent(home, "sessions", "--json").stdout)
    assert info["session_id"] in [row["id"] for row in listed]


async def test_a_client_that_disconnects_leaves_a_resumable_session(
    home: Path, server_log: IO[str]
) -> None:
    async with Connection(lambda: stdio_session(home, server_log)) as first:
        await first.call("python", code="kept = 6 * 7")
        session_id = (await session_info(first))["session_id"]
    record = SessionStore(home).get(session_id)
    assert record.status == "paused" and record.sandbox_state is not None
    assert f"kernelagent mcp --session {session_id}" in record.reason
    reattach = ("--session", session_id)
    async with Connection(lambda: stdio_session(home, server_log, *reattach)) as again:
        result = text_of(await again.call("python", code="print(kept)"))
        assert "re-attached to its running sandbox" in result and "42" in result
        assert (await session_info(again))["session_id"] == session_id
    recorded = nbformat.read(record.notebook, as_version=4)
    assert [c.source for c in recorded.cells if c.cell_type == "code"] == [
        "kept = 6 * 7",
        "print(kept)",
    ]
    await stop_sandboxes(home)  # the sandbox is gone: re-attaching restores it by replay
    async with Connection(lambda: stdio_session(home, server_log, *reattach)) as restored:
        result = text_of(await restored.call("python", code="kept + 1"))
        assert "new sandbox" in result and "43" in result
    await stop_sandboxes(home)
    replayed = kernelagent(home, "replay", str(record.notebook), "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


async def test_nothing_else_on_stdout_reaches_the_protocol(home: Path, server_log: IO[str]) -> None:
    """A local kernel inherits the server's stdout; what it writes there goes to stderr."""
    local = ("--sandbox", "local")
    async with Connection(lambda: stdio_session(home, server_log, *local)) as connection:
        noise = "import os\nos.write(1, b'not json-rpc\\n')\nprint('fine')"
        assert "fine" in text_of(await connection.call("python", code=noise))
        assert "2" in text_of(await connection.call("python", code="1 + 1"))
    server_log.flush()
    assert "not json-rpc" in (home / "server.log").read_text()  # the server's stderr


async def test_http_needs_the_bearer_token(home: Path, tmp_path: Path) -> None:
    port, token_file = free_port(), tmp_path / "token"
    command = mcp_command("--http", "--port", str(port), "--token-file", str(token_file))
    server = subprocess.Popen(
        command, env=server_env(home), cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        await _wait_for(url)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        async with httpx.AsyncClient() as plain:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
            refused = await plain.post(url, json=hello)
            wrong = await plain.post(url, json=hello, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and wrong.status_code == 401
        async with (
            Connection(lambda: http_session(url, token)) as connection,
            Connection(lambda: http_session(url, token)) as other,
        ):
            await connection.call("python", code="base = 20")
            assert "40" in text_of(await connection.call("python", code="base * 2"))
            alone = await other.call("python", code="base")  # its own session and kernel
            assert alone.isError and "NameError" in text_of(alone)
            ids = {(await session_info(c))["session_id"] for c in (connection, other)}
            assert len(ids) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
        await stop_sandboxes(home)


async def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as probe:
        while time.monotonic() < deadline:
            try:
                await probe.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise AssertionError(f"the MCP server did not answer at {url}")
