"""Durable sessions across processes: approvals, resume after SIGKILL, crash recovery."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import docker
import nbformat
import pytest

import kernelagent.api as api
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

EXIT_AWAITING_APPROVAL = 4


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERNELAGENT_HOME": str(home)},
    )


def code_cells(notebook_path: str | Path) -> list[nbformat.NotebookNode]:
    notebook = nbformat.read(notebook_path, as_version=4)
    nbformat.validate(notebook)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


APPROVAL_SCRIPT = [
    ScriptedTurn.python("x = 41"),
    ScriptedTurn.shell("echo approved > proof.txt && cat proof.txt"),
    ScriptedTurn.python("x + 1"),
    ScriptedTurn.final("42"),
]


def test_approval_across_two_processes(
    docker_available: None, store_url: str, tmp_path: Path
) -> None:
    """On both stores: the second process finds the session and its pending action."""
    with ScriptedModelServer(APPROVAL_SCRIPT) as server:
        first = cli(
            "run",
            "task",
            "--approve",
            "shell",
            "--base-url",
            server.base_url,
            "--json",
            home=tmp_path,
        )
        assert first.returncode == EXIT_AWAITING_APPROVAL, first.stderr
        session_id = json.loads(first.stdout)["session_id"]
        shown = cli("show", session_id, home=tmp_path)
        assert "echo approved > proof.txt" in shown.stderr and "sha256" in shown.stderr
        second = cli("approve", session_id, "--json", home=tmp_path)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["status"] == "completed" and summary["answer"] == "42"
    cells = code_cells(summary["notebook"])
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "ok", "ok"]
    assert cells[2].outputs[0]["data"]["text/plain"] == "42"  # re-attached: x survived
    decisions = cells[1].metadata.kernelagent.approval
    assert [d["decision"] for d in decisions] == ["requested", "approved"]
    assert "@" in decisions[1]["by"]
    record = SessionStore(tmp_path).get(session_id)
    assert record.status == "completed" and record.pending is None
    listed = json.loads(cli("sessions", "--json", home=tmp_path).stdout)
    assert [(s["id"], s["status"], s["node"]) for s in listed] == [(session_id, "completed", None)]
    assert not (tmp_path / "sessions.db").exists()  # every process used the store asked for


def test_reject_with_reason_reaches_the_model(docker_available: None, tmp_path: Path) -> None:
    script = [ScriptedTurn.shell("rm -rf /workspace/*"), ScriptedTurn.final("did not delete")]
    with ScriptedModelServer(script) as server:
        first = cli(
            "run",
            "task",
            "--approve",
            "shell",
            "--base-url",
            server.base_url,
            "--json",
            home=tmp_path,
        )
        session_id = json.loads(first.stdout)["session_id"]
        second = cli(
            "reject", session_id, "--reason", "never delete the inputs", "--json", home=tmp_path
        )
        last_request = json.dumps(server.completion_requests()[-1].body)
    assert second.returncode == 0, second.stderr
    assert "never delete the inputs" in last_request and "rejected by" in last_request
    cells = code_cells(json.loads(second.stdout)["notebook"])
    assert cells[0].metadata.kernelagent.status == "rejected"
    assert cells[0].metadata.kernelagent.approval[-1]["reason"] == "never delete the inputs"


def test_edited_approval_runs_the_edit_and_records_it(
    docker_available: None, tmp_path: Path
) -> None:
    script = [ScriptedTurn.python("open('/etc/motd', 'w').write('x')"), ScriptedTurn.final("ok")]
    edit = tmp_path / "edit.py"
    edit.write_text("open('/workspace/motd', 'w').write('edited')")
    with ScriptedModelServer(script) as server:
        first = cli(
            "run",
            "task",
            "--approve-outside-writes",
            "--base-url",
            server.base_url,
            "--json",
            home=tmp_path,
        )
        assert first.returncode == EXIT_AWAITING_APPROVAL, first.stderr
        assert "writes outside the workspace (/etc/motd)" in json.loads(first.stdout)["reason"]
        session_id = json.loads(first.stdout)["session_id"]
        second = cli("approve", session_id, "--edit", str(edit), "--json", home=tmp_path)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert (Path(summary["workspace"]) / "motd").read_text() == "edited"
    cell = code_cells(summary["notebook"])[0]
    assert cell.source == edit.read_text()
    assert cell.metadata.kernelagent.approval[-1]["decision"] == "edited"
    assert (
        cell.metadata.kernelagent.approval[-1]["original_code"]
        == "open('/etc/motd', 'w').write('x')"
    )


def test_sigkill_mid_cell_then_resume_loses_nothing(docker_available: None, tmp_path: Path) -> None:
    slow = "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.1)"
    script = [
        ScriptedTurn.python("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})"),
        ScriptedTurn.python("total = int(df.a.sum())\ntotal"),
        ScriptedTurn.python(slow),
        ScriptedTurn.python("print(total * 2)"),
        ScriptedTurn.final("12"),
    ]
    with ScriptedModelServer(script) as server:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "run",
                "task",
                "--base-url",
                server.base_url,
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "KERNELAGENT_HOME": str(tmp_path)},
        )
        record = _wait_for_running_cell(tmp_path, count=3)
        time.sleep(1.0)
        process.kill()  # SIGKILL: no cleanup at all
        process.wait(timeout=30)
        resumed = cli("resume", record.id, "--json", home=tmp_path)
        requests = server.completion_requests()
    assert resumed.returncode == 0, resumed.stderr
    cells = code_cells(json.loads(resumed.stdout)["notebook"])
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "ok", "interrupted", "ok"]
    assert cells[1].outputs[0]["data"]["text/plain"] == "6"
    assert cells[2].outputs and cells[2].outputs[0]["text"].startswith("0\n")
    assert cells[3].outputs[0]["text"] == "12\n"  # the state was there after resume
    assert "interrupted" in json.dumps(requests[3].body)


def _wait_for_running_cell(home: Path, count: int, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            records = SessionStore(home).list()
        except sqlite3.Error:
            records = []
        if records:
            cells = code_cells(records[0].notebook) if records[0].notebook.exists() else []
            if (
                len(cells) >= count
                and cells[count - 1].metadata.kernelagent.status == "running"
                and cells[count - 1].outputs  # an autosave with output so far has happened
            ):
                return records[0]
        time.sleep(0.2)
    raise AssertionError("the session never reached the running cell")


def test_killed_container_is_recovered_with_variables(
    docker_available: None, tmp_path: Path
) -> None:
    client = docker.from_env()

    def kill_my_container() -> str:
        for container in client.containers.list(filters={"label": "kernelagent.managed=1"}):
            if container.labels.get("kernelagent.workspace", "").startswith(str(tmp_path)):
                container.kill()
                return "killed"
        return "not found"

    script = [
        ScriptedTurn.python("data = list(range(10))\nlen(data)"),
        ScriptedTurn.python("import time\ntime.sleep(30)"),
        ScriptedTurn.python("sum(data)"),
        ScriptedTurn.final("45"),
    ]
    with ScriptedModelServer(script) as server:
        import threading

        def killer() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(server.completion_requests()) >= 2:
                    time.sleep(1.5)
                    kill_my_container()
                    return
                time.sleep(0.1)

        thread = threading.Thread(target=killer)
        thread.start()
        result = api.run(
            "task",
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
            store=SessionStore(tmp_path / "home"),
        )
        thread.join()
        feedback = json.dumps(server.completion_requests()[2].body)
    assert result.status == "completed" and result.answer == "45"
    cells = code_cells(tmp_path / "s.ipynb")
    assert [c.metadata.kernelagent.status for c in cells] == ["ok", "kernel_died", "ok"]
    assert cells[2].outputs[0]["data"]["text/plain"] == "45"
    assert "kernel died" in feedback and "re-run" in feedback


def test_a_cell_that_always_kills_the_kernel_fails_the_session(
    docker_available: None, tmp_path: Path
) -> None:
    crash = "import ctypes\nctypes.string_at(0)"
    with ScriptedModelServer([ScriptedTurn.python(crash)] * 6) as server:
        result = api.run(
            "task",
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
            store=SessionStore(tmp_path / "home"),
            max_steps=10,
        )
    assert result.status == "failed"
    assert "the kernel died 4 times" in result.reason and "segmentation fault" in result.reason


def test_resume_errors_are_clear(docker_available: None, tmp_path: Path) -> None:
    unknown = cli("resume", "nosuchsession", home=tmp_path)
    assert unknown.returncode == 1 and "no session 'nosuchsession'" in unknown.stderr

    with ScriptedModelServer([ScriptedTurn.final("done")]) as server:
        done = cli(
            "run",
            "task",
            "--sandbox",
            "local",
            "--base-url",
            server.base_url,
            "--json",
            home=tmp_path,
        )
    session_id = json.loads(done.stdout)["session_id"]
    completed = cli("resume", session_id, home=tmp_path)
    assert (
        completed.returncode == 1
        and "is completed" in completed.stderr
        and "instruction" in completed.stderr
    )

    notebook = Path(json.loads(done.stdout)["notebook"])
    notebook.write_text("{ this is not json")
    corrupted = cli("resume", session_id, "go on", home=tmp_path)
    assert (
        corrupted.returncode == 1
        and "damaged" in corrupted.stderr
        and str(notebook.parent) in corrupted.stderr
    )


def test_sessions_table_lists_them(tmp_path: Path) -> None:
    with ScriptedModelServer([ScriptedTurn.final("a")]) as server:
        done = cli(
            "run",
            "first task",
            "--sandbox",
            "local",
            "--base-url",
            server.base_url,
            "--json",
            home=tmp_path,
        )
    listed = cli("sessions", "--json", home=tmp_path)
    rows = json.loads(listed.stdout)
    assert rows[0]["id"] == json.loads(done.stdout)["session_id"]
    assert rows[0]["status"] == "completed" and rows[0]["task"] == "first task"


@pytest.mark.parametrize("status", ["awaiting_approval"])
def test_idle_sandboxes_are_stopped(docker_available: None, tmp_path: Path, status: str) -> None:
    import asyncio

    from kernelagent.session.durable import stop_idle_sandboxes

    with ScriptedModelServer(APPROVAL_SCRIPT) as server:
        first = cli(
            "run",
            "task",
            "--approve",
            "shell",
            "--base-url",
            server.base_url,
            "--json",
            home=tmp_path,
        )
        session_id = json.loads(first.stdout)["session_id"]
        store = SessionStore(tmp_path)
        assert store.get(session_id).status == status and store.get(session_id).sandbox_state
        container_id = store.get(session_id).sandbox_state["provisioner_info"]["container_id"]
        assert asyncio.run(stop_idle_sandboxes(store, idle_seconds=0)) == [session_id]
        assert store.get(session_id).sandbox_state is None
        assert docker.from_env().containers.list(all=True, filters={"id": container_id}) == []
        approved = cli("approve", session_id, "--json", home=tmp_path)  # restored by replay
    assert approved.returncode == 0, approved.stderr
    cells = code_cells(json.loads(approved.stdout)["notebook"])
    assert cells[-1].outputs[0]["data"]["text/plain"] == "42"


def test_a_local_model_is_served_again_when_its_session_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session on a model kernelagent served itself outlives that server: approving it
    later starts the model again (here a scripted server stands in for llama.cpp)."""
    import asyncio

    import kernelagent.localmodel as localmodel
    import kernelagent.localmodel.server as localserver
    from kernelagent.agent.approvals import ApprovalPolicy
    from kernelagent.session.durable import decide

    store = SessionStore(tmp_path / "home")
    config = api.build_config(model="tiny-local", api="chat", sandbox="local")
    config.local_model = "tiny-local"
    config.approval = ApprovalPolicy(mode="shell")
    with ScriptedModelServer(APPROVAL_SCRIPT[:2]) as first_server:
        config.base_url = first_server.base_url
        first = api.run(
            "task",
            config=config,
            store=store,
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
        )
    assert first.status == "awaiting_approval"

    served: list[str | None] = []
    second_server = ScriptedModelServer(APPROVAL_SCRIPT[2:]).start()
    closed: list[bool] = []

    class Handle:
        base_url, model_name = second_server.base_url, "tiny-local"
        parallel_slots, n_ctx = 4, 8192
        reports_streaming_usage = True
        backend = "llama-server"

        async def aclose(self) -> None:
            closed.append(True)
            second_server.stop()

    async def fake_start(name_or_path: str | None = None, **_: object) -> Handle:
        served.append(name_or_path)
        return Handle()

    monkeypatch.setattr(localmodel, "start_local_model", fake_start)
    monkeypatch.setattr(localserver, "ensure_llama_cpp_server_installed", lambda: None)
    decision = decide(store.get(first.session_id), "approved")
    resumed = asyncio.run(api.aresume(first.session_id, decision=decision, store=store))
    assert served == ["tiny-local"] and closed == [True]
    assert resumed.status == "completed" and resumed.answer == "42"
    assert len(second_server.completion_requests()) == 2
    assert store.get(first.session_id).config["local_model"] == "tiny-local"
