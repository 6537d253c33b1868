"""The Jupyter route: kernels started through the installed kernelspec (JupyterLab,
nbclient, jupyter_client), and what a recorded session notebook runs in.

Threats: a recorded notebook naming the host's ``python3`` kernel, so "Run All" runs the
agent's code on the host; a sandbox that cannot write its notebook directory when the
host runs as root, which tempts people into loosening it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from kernelagent import api
from kernelagent.execution.run import execute
from kernelagent.replay.replay import ReplayOptions, replay_notebook
from kernelagent.sandbox.maintenance import install_kernelspec
from kernelagent.sandbox.sandbox import Sandbox, SandboxError
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.adversarial.conftest import Record
from tests.egress_servers import RecordingHTTPServer

KERNEL_IDS: list[str] = []
WHERE_AM_I = (
    "import os\nprint(os.getcwd(), os.getuid(), os.path.isdir('/run/kernelagent'), "
    "os.path.exists({marker!r}))"
)


@pytest.fixture
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Kernelspecs installed by the test go to a data dir of its own (the runtime dir stays
    short: ipc socket paths must fit in 107 bytes)."""
    data = tmp_path / "jupyter-data"
    runtime = Path("/tmp") / f"ka-rt-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    yield data
    if runtime.exists():
        for path in sorted(runtime.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        runtime.rmdir()


async def test_run_all_on_a_recorded_session_stays_in_the_sandbox(
    docker_available: None, jupyter_dirs: Path, tmp_path: Path, record: Record
) -> None:
    """ "Run All" on a session notebook the agent recorded, with the kernel its metadata names (as
    JupyterLab does)"""
    marker = tmp_path / "host-only-marker"
    marker.write_text("on the host")
    record(
        expected="metadata.kernelspec names the kernelagent sandbox kernelspec (installed when "
        "missing); the cells run in a container: cwd /workspace, non-root, host files invisible"
    )
    code = WHERE_AM_I.format(marker=str(marker))
    with ScriptedModelServer([ScriptedTurn.python(code), ScriptedTurn.final("done")]) as server:
        result = await api.arun(
            "where am I?",
            base_url=server.base_url,
            model="scripted-model",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "session.ipynb",
        )
    notebook = nbformat.read(result.notebook_path, as_version=4)
    spec = notebook.metadata.kernelspec
    installed = Path(KernelSpecManager().get_kernel_spec(spec.name).resource_dir) / "kernel.json"
    for cell in notebook.cells:
        cell.outputs = [] if cell.cell_type == "code" else None
        if cell.cell_type != "code":
            del cell["outputs"]
    await NotebookClient(
        notebook,
        timeout=120,
        kernel_name=spec.name,
        resources={"metadata": {"path": str(result.workspace)}},
    ).async_execute()
    printed = (
        notebook.cells[[c.cell_type for c in notebook.cells].index("code")]
        .outputs[0]["text"]
        .split()
    )
    record(
        observed=f"kernelspec {spec.name!r} ({spec.display_name}), installed at {installed}; "
        f"Run All printed cwd={printed[0]} uid={printed[1]} runtime dir={printed[2]} host marker "
        f"visible={printed[3]}"
    )
    assert spec.name == "kernelagent" and installed.is_file()
    assert '"kernelagent-docker"' in installed.read_text()
    assert (
        printed[0] == "/workspace"
        and printed[1] != "0"
        and printed[2] == "True"
        and printed[3] == "False"
    )


async def test_replay_uses_the_sandbox_whatever_the_metadata_says(
    docker_available: None, tmp_path: Path, record: Record
) -> None:
    """Replay a notebook whose metadata.kernelspec names the host's python3 kernel"""
    marker = tmp_path / "host-only-marker"
    marker.write_text("on the host")
    record(expected="replay ignores the kernelspec: the cell runs in the Docker sandbox")
    notebook = new_notebook(
        cells=[new_code_cell(WHERE_AM_I.format(marker=str(marker)))],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = tmp_path / "notebooks" / "host-kernel.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook, path)
    report = await replay_notebook(path, ReplayOptions(sandbox=SandboxSettings()))
    if report.workspace is not None:
        shutil.rmtree(report.workspace, ignore_errors=True)
    assert report.replayed is not None
    printed = report.replayed.cells[0].outputs[0]["text"].split()
    record(
        observed=f"replayed cell printed cwd={printed[0]} uid={printed[1]} runtime "
        f"dir={printed[2]} "
        f"host marker visible={printed[3]}"
    )
    assert printed[0] == "/workspace" and printed[2] == "True" and printed[3] == "False"


async def _run_in_kernelspec_kernel(directory: Path, code: str) -> str:
    """Start the installed kernelspec with a plain jupyter_client KernelManager in ``directory``
    (as JupyterLab does for a notebook there) and return what ``code`` printed."""
    manager = AsyncKernelManager(kernel_name="kernelagent-adversarial")
    await manager.start_kernel(cwd=str(directory))
    KERNEL_IDS.append(str(manager.kernel_id))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        result = await execute(client, code, timeout=60)
        return result.text()
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


async def test_kernelspec_kernel_writes_in_a_root_owned_notebook_directory(
    docker_available: None, jupyter_dirs: Path, tmp_path: Path, record: Record
) -> None:
    """As root, open a notebook in a directory root owns and write a file next to it (a plain
    jupyter_client frontend)"""
    record(
        expected="the kernel (never uid 0) writes in its directory; the directory keeps its owner "
        "and mode bits for others; files already there stay as they were (not writable by it)"
    )
    install_kernelspec(SandboxSettings(), "kernelagent-adversarial", user=True)
    project = tmp_path / "project"
    project.mkdir(mode=0o755)
    (project / "input.csv").write_text("a\n1\n")
    os.chmod(project / "input.csv", 0o644)
    before = project.stat()
    printed = await _run_in_kernelspec_kernel(
        project,
        (
            "import os\nopen('result.txt', 'w').write('written by the kernel')\n"
            "try:\n    open('input.csv', 'a').write('2\\n'); existing = 'appended'\n"
            "except PermissionError: existing = 'PermissionError'\n"
            "print(os.getuid(), os.getcwd(), existing)"
        ),
    )
    after = project.stat()
    uid, cwd, existing = printed.split()
    written = project / "result.txt"
    record(
        observed=f"host euid={os.geteuid()}, directory owner={before.st_uid}; kernel uid={uid} "
        f"cwd={cwd}; result.txt {'written' if written.is_file() else 'MISSING'} (owner "
        f"{written.stat().st_uid if written.exists() else '-'}); existing root file -> {existing}; "
        f"directory owner after={after.st_uid}, other bits {stat.S_IMODE(after.st_mode) & 0o007:o}"
    )
    assert uid != "0" and cwd == "/workspace"
    assert written.read_text() == "written by the kernel"
    assert after.st_uid == before.st_uid and stat.S_IMODE(after.st_mode) & 0o007 == 0o005
    if os.geteuid() == 0:  # root owns the directory: the sandbox got an ACL entry, nothing else
        assert existing == "PermissionError"
        assert (project / "input.csv").read_text() == "a\n1\n"
        assert b"\x02\x00\x07\x00\xe8\x03\x00\x00" in os.getxattr(
            project, "system.posix_acl_access"
        )


async def test_kernelspec_kernel_runs_as_the_directory_owner(
    docker_available: None, jupyter_dirs: Path, tmp_path: Path, record: Record
) -> None:
    """As root, open a notebook in a directory a regular user (uid 4242) owns"""
    record(expected="the kernel runs as that user (not root, not 1000) and writes as them")
    install_kernelspec(SandboxSettings(), "kernelagent-adversarial", user=True)
    project = tmp_path / "alice"
    project.mkdir(mode=0o755)
    owner = 4242 if os.geteuid() == 0 else os.geteuid()
    if os.geteuid() == 0:
        os.chown(project, owner, owner)
    printed = await _run_in_kernelspec_kernel(
        project, "import os\nopen('mine.txt', 'w').write('x')\nprint(os.getuid(), os.getgid())"
    )
    record(
        observed=f"kernel uid:gid={printed.strip()}; mine.txt "
        f"owner={(project / 'mine.txt').stat().st_uid}"
    )
    assert printed.split() == [str(owner), str(owner)]
    assert (project / "mine.txt").stat().st_uid == owner


async def test_system_and_home_directories_are_never_opened_for_writing(
    docker_available: None, record: Record
) -> None:
    """As root, start a sandbox whose workspace is root's home directory"""
    record(
        expected="refused with a message saying to use a project directory; the directory keeps "
        "its owner and gets no ACL"
    )
    home = Path(pwd.getpwuid(0).pw_dir)
    before = home.stat()
    try:
        sandbox = await Sandbox.start(SandboxSettings(), home)
    except SandboxError as error:
        refusal = str(error)
    else:
        await sandbox.shutdown()
        refusal = ""
    after = home.stat()
    try:
        acl = os.getxattr(home, "system.posix_acl_access")
    except OSError:
        acl = b""
    record(
        observed=f"host euid={os.geteuid()}; Sandbox.start({home}) -> {refusal or 'started'}; "
        f"owner "
        f"{before.st_uid} -> {after.st_uid}; ACL entries {len(acl)} bytes"
    )
    if os.geteuid() == 0:
        assert "is a system or home directory" in refusal and "project directory" in refusal
    assert after.st_uid == before.st_uid and after.st_mode == before.st_mode
    assert b"\xe8\x03\x00\x00" not in acl  # no entry for uid 1000


async def test_kernelspec_with_allow_net_gives_audited_egress(
    docker_available: None, jupyter_dirs: Path, tmp_path: Path, record: Record
) -> None:
    """A kernelspec installed with --allow-net 127.0.0.1:A, used by a plain jupyter_client frontend:
    fetch A and B"""
    record(
        expected="A answers, B gets 403; both are in the kernel's egress log under the Jupyter "
        "data dir"
    )
    allowed, refused = RecordingHTTPServer(), RecordingHTTPServer()
    try:
        install_kernelspec(
            SandboxSettings(network_allow=[f"127.0.0.1:{allowed.port}"]),
            "kernelagent-adversarial",
            user=True,
        )
        project = tmp_path / "project"
        project.mkdir()
        printed = await _run_in_kernelspec_kernel(
            project,
            (
                "import urllib.request, urllib.error\n"
                f"print(urllib.request.urlopen('http://127.0.0.1:{allowed.port}/x', "
                f"timeout=20).read().decode())\n"
                f"try:\n    urllib.request.urlopen('http://127.0.0.1:{refused.port}/y', "
                f"timeout=20)\n"
                "except urllib.error.HTTPError as error:\n    print(error.code)"
            ),
        )
    finally:
        allowed.close()
        refused.close()
    logs = list((jupyter_dirs / "kernelagent" / "egress").glob("*.jsonl"))
    lines = [json.loads(line) for path in logs for line in path.read_text().splitlines()]
    record(
        observed=f"printed {printed.split()}; log {[p.name for p in logs]} with "
        f"{sorted((line['decision'], line['port']) for line in lines)}; B "
        f"connections={refused.connections}"
    )
    assert printed.split() == ["hello", "/x", "403"]
    assert [path.stem for path in logs] == [KERNEL_IDS[-1]]
    assert sorted(line["decision"] for line in lines) == ["allowed", "refused"]
    assert refused.connections == 0
