"""Faults of the host side: killed mid-save, disk full, dockerd restarted between steps."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.adversarial.conftest import Record

SAVE_FOREVER = textwrap.dedent(
    """
    import sys, time
    from kernelagent.events import CellFinished, CellStarted
    from kernelagent.notebook.recorder import NotebookRecorder

    recorder = NotebookRecorder(sys.argv[1], session_id="s", autosave_interval=0)
    n = 0
    print("ready", flush=True)
    while True:
        n += 1
        cell = f"c{n}"
        recorder.handle(
            CellStarted(cell_id=cell, tool_call_id=cell, kind="python", code=f"x = {n}")
        )
        out = {"output_type": "stream", "name": "stdout", "text": "y" * 20000 + "\\n"}
        recorder.handle(CellFinished(cell_id=cell, status="ok", outputs=[out],
                                     started_at=time.time(), finished_at=time.time()))
    """
)


def test_sigkill_mid_save_leaves_the_old_or_the_new_notebook(
    tmp_path: Path, record: Record
) -> None:
    """SIGKILL a process that records cells and saves the notebook as fast as it can, 15 times"""
    record(
        expected="after every kill the notebook on disk is a valid notebook (the old or the new "
        "version)"
    )
    path = tmp_path / "s.ipynb"
    rng = random.Random(7)
    seen_cells = []
    for _ in range(15):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVE_FOREVER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        notebook = nbformat.read(path, as_version=4)  # never half-written
        nbformat.validate(notebook)
        seen_cells.append(len(notebook.cells))
    assert max(seen_cells) > 0
    record(observed=f"15 kills, every file valid; cells on disk after each kill: {seen_cells}")


@pytest.fixture
def tiny_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MB tmpfs: the session directory on a disk that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_gives_a_clear_error_and_keeps_the_previous_notebook(
    tiny_disk: Path, tmp_path: Path, record: Record
) -> None:
    """The session's notebook on a 1 MB disk; a cell prints 1.5 MB"""
    record(
        expected="one clear error saying to free space, exit 1; the previous notebook stays valid"
    )
    script = [
        ScriptedTurn.python("x = 1\nprint('small')"),
        ScriptedTurn.python("print('z' * 1_500_000)"),  # its record cannot fit on the disk
        ScriptedTurn.final("never"),
    ]
    notebook = tiny_disk / "s.ipynb"
    with ScriptedModelServer(script) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "run",
                "task",
                "--sandbox",
                "local",
                "--base-url",
                server.base_url,
                "--notebook",
                str(notebook),
                "--workspace",
                str(tmp_path / "ws"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "KERNELAGENT_HOME": str(tmp_path / "home")},
        )
    assert done.returncode == 1
    assert "space" in done.stderr.lower() and "free" in done.stderr.lower()
    saved = nbformat.read(notebook, as_version=4)
    nbformat.validate(saved)
    cells = [c for c in saved.cells if c.cell_type == "code"]
    assert cells[0].metadata.kernelagent.status == "ok" and cells[0].outputs[0]["text"] == "small\n"
    record(
        observed=f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:160]}; notebook "
        f"valid, first cell kept"
    )


def _dockerd_command() -> list[str]:
    pid = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    if not pid:
        pytest.fail("dockerd is not running")
    return Path(f"/proc/{pid[0]}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def _restart_dockerd() -> None:
    command = _dockerd_command()
    pid = int(
        subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0]
    )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    log = open("/tmp/kernelagent-test-dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
    subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail("dockerd did not come back")


def test_dockerd_restarted_between_steps(
    docker_available: None, tmp_path: Path, record: Record
) -> None:
    """dockerd restarted while a session waits for approval (its container does not survive)"""
    record(
        expected="approve resumes the session: a fresh sandbox, state restored by replay, the "
        "answer uses it"
    )
    if shutil.which("pidof") is None or os.geteuid() != 0:
        pytest.fail("restarting dockerd needs root and pidof")
    script = [
        ScriptedTurn.python("kept = [1, 2, 3]"),
        ScriptedTurn.shell("echo next"),
        ScriptedTurn.python("sum(kept)"),
        ScriptedTurn.final("6"),
    ]
    env = {**os.environ, "KERNELAGENT_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kernelagent.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    with ScriptedModelServer(script) as server:
        first = cli("run", "task", "--approve", "shell", "--base-url", server.base_url, "--json")
        assert first.returncode == 4, first.stderr
        session_id = json.loads(first.stdout)["session_id"]
        _restart_dockerd()  # the session's container does not survive this
        second = cli("approve", session_id, "--json")
    assert second.returncode == 0, second.stderr
    cells = [
        c
        for c in nbformat.read(json.loads(second.stdout)["notebook"], as_version=4).cells
        if c.cell_type == "code"
    ]
    assert cells[-1].outputs[0]["data"]["text/plain"] == "6"  # restored by replay
    record(observed="dockerd restarted; approve exit 0; sum(kept) after restore = 6")
