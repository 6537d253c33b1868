"""The machine-wide model service with a stand-in server (tests/fake_model_server.py).

The real parts: the supervisor process (detached, its locks, leases, idle timeout,
restarts), the state files, the CLI, and the openai client over HTTP. The server it
supervises is a small Python HTTP server in place of llama-server, so these are fast;
tests/test_model_service_real.py runs the same lifecycle on the real llama-server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kernelagent import api, localmodel
from kernelagent.localmodel import backends, service
from kernelagent.localmodel.backends import NoModelServerError
from kernelagent.localmodel.server import ServerStartError
from kernelagent.localmodel.service import running_services
from kernelagent.localmodel.service_files import pid_alive, read_state, supervisor_alive
from kernelagent.localmodel.store import ModelStore
from tests.model_service_fixtures import (
    FAKE_SERVER,
    chat,
    lease,
    most_in_flight,
    ps,
    tiny,
    wait_for,
)

# --- one server, shared, reference-counted ----------------------------------------


async def test_sessions_share_one_server_and_it_stops_when_idle(models: ModelStore) -> None:
    first = await lease(models, "first", idle_timeout=1.0)
    second = await lease(models, "second", idle_timeout=1.0)
    assert first.state.instance == second.state.instance and first.base_url == second.base_url
    assert first.parallel_slots == 4 and first.backend == "llama-server"
    assert localmodel.parallel_slots(first.base_url) == 4
    assert localmodel.parallel_slots("http://127.0.0.1:9/v1") is None
    (row,) = ps(models)
    assert row["sessions"] == 2 and {user["label"] for user in row["users"]} == {"first", "second"}  # type: ignore[union-attr]
    assert row["pid"] == first.state.pid and row["rss_bytes"]
    assert await chat(first.base_url) == "FINAL ANSWER: 42"

    first.close()
    (row,) = ps(models)
    assert row["sessions"] == 1
    second.close()
    paths = service.paths_for(models.resolve(tiny(models)), models.root)
    wait_for(lambda: read_state(paths) is None, "the idle server stopped")
    wait_for(
        lambda: not pid_alive(first.state.pid) and not supervisor_alive(paths),
        "its processes exited",
    )
    assert ps(models) == []


START_AND_HOLD = textwrap.dedent("""
    import asyncio, sys
    from kernelagent.localmodel import start_local_model
    from kernelagent.localmodel.store import ModelStore
    async def main():
        handle = await start_local_model(
            sys.argv[1], store=ModelStore(), label="doomed", idle_timeout=1.0
        )
        print(handle.state.supervisor_pid, flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
""")


def test_the_service_outlives_a_killed_starter_and_leaks_no_lease(models: ModelStore) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", START_AND_HOLD, tiny(models)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    supervisor_pid = int(starter.stdout.readline())
    paths = service.paths_for(models.resolve(tiny(models)), models.root)
    assert ps(models)[0]["sessions"] == 1
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    assert pid_alive(supervisor_pid) and supervisor_alive(paths)  # not a child of the starter
    wait_for(lambda: read_state(paths) is None, "the server stopped once the dead lease was seen")


async def test_a_server_that_dies_in_use_is_started_again_on_the_same_port(
    models: ModelStore,
) -> None:
    handle = await lease(models, idle_timeout=30)
    paths = service.paths_for(models.resolve(tiny(models)), models.root)
    old_pid = handle.state.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)

    def restarted() -> bool:
        state = read_state(paths)
        return (
            state is not None
            and state.restarts == 1
            and state.status == "ready"
            and state.pid != old_pid
        )

    wait_for(restarted, "the supervisor restarted the server")
    state = read_state(paths)
    assert state is not None and state.port == handle.state.port
    assert await chat(handle.base_url) == "FINAL ANSWER: 42"  # the session's URL still works
    handle.close()


async def test_a_killed_service_is_replaced_by_the_next_session(models: ModelStore) -> None:
    handle = await lease(models, idle_timeout=30)
    paths = service.paths_for(models.resolve(tiny(models)), models.root)
    os.kill(handle.state.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not supervisor_alive(paths), "the supervisor died")
    wait_for(lambda: not pid_alive(handle.state.pid), "its server died with it")
    handle.close()
    again = await lease(models, idle_timeout=30)
    assert again.state.instance != handle.state.instance and again.state.port == handle.state.port
    assert await chat(again.base_url) == "FINAL ANSWER: 42"
    again.close()


async def test_a_session_on_a_dead_service_is_retried_until_the_next_one_serves(
    models: ModelStore,
) -> None:
    handle = await lease(models, idle_timeout=30)
    os.kill(handle.state.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(handle.state.pid), "the server died with its supervisor")
    other = asyncio.create_task(lease(models, idle_timeout=30))  # another session starts it again
    assert await chat(handle.base_url) == "FINAL ANSWER: 42"
    (await other).close()
    handle.close()


def test_model_stop_stops_it_and_says_who_used_it(models: ModelStore) -> None:
    handle = asyncio.run(lease(models, idle_timeout=300))
    done = subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", "model", "stop", "tiny"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "stopped tiny" in done.stderr and "1 session used it" in done.stderr
    assert not pid_alive(handle.state.pid) and ps(models) == []
    handle.close()


async def test_a_changed_model_file_gets_a_new_server(models: ModelStore) -> None:
    handle = await lease(models, idle_timeout=30)
    path = Path(tiny(models))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    notices: list[str] = []
    again = await lease(models, idle_timeout=30, on_notice=notices.append)
    assert again.state.instance != handle.state.instance
    assert any("serves another file" in notice for notice in notices)
    handle.close()
    again.close()


async def test_served_model_points_the_config_at_the_service(models: ModelStore) -> None:
    config = api.build_config(model="ignored", api="code-blocks")
    config.local_model = tiny(models)
    config.attempts = 3
    async with api.served_model(config) as served:
        assert served.model == "tiny" and localmodel.parallel_slots(served.base_url) == 4
        assert served.parallel_attempts == 3  # the attempts share the server's slots
        slot_tokens = running_services(models.root)[0].state.ctx_per_slot
        assert served.limits.context_chars == api.context_chars_for(slot_tokens) < 60_000
        assert ps(models)[0]["sessions"] == 1
    assert ps(models)[0]["sessions"] == 0


# --- backends -----------------------------------------------------------------------


FAKE_LLAMA_CPP = """
import runpy, sys
sys.argv[0] = {script!r}
runpy.run_path({script!r}, run_name="__main__")
"""


async def test_the_fallback_server_gets_one_request_at_a_time(
    models: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fake_packages" / "llama_cpp" / "server"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_LLAMA_CPP.format(script=str(FAKE_SERVER)))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(tmp_path / "fake_packages"), os.environ.get("PYTHONPATH", "")]),
    )
    monkeypatch.setenv("FAKE_DELAY", "0.3")
    monkeypatch.setattr(backends, "ensure_llama_cpp_server_installed", lambda: None)
    handle = await lease(models, backend="llama-cpp-python", idle_timeout=30)
    assert handle.backend == "llama-cpp-python" and handle.parallel_slots == 1
    assert not handle.reports_streaming_usage
    replies = await asyncio.gather(*(chat(handle.base_url, f"q{n}") for n in range(3)))
    assert replies == ["FINAL ANSWER: 42"] * 3
    assert most_in_flight(handle.base_url) == 1
    command = (
        models.root / "service" / f"{service.paths_for(models.resolve(tiny(models))).key}.log"
    ).read_text()
    assert "--interrupt_requests False" in command
    handle.close()


async def test_parallel_slots_serve_requests_together(
    models: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DELAY", "0.5")
    handle = await lease(models, slots=3, idle_timeout=30)
    assert handle.parallel_slots == 3
    await asyncio.gather(*(chat(handle.base_url, f"q{n}") for n in range(3)))
    assert most_in_flight(handle.base_url) > 1  # no kernelagent-side queue
    handle.close()


async def test_no_server_installed_says_what_to_run(
    models: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KERNELAGENT_LLAMA_SERVER")
    monkeypatch.setattr(backends, "installed_llama_server", lambda root=None: None)

    def missing() -> None:
        raise backends.LlamaCppNotInstalledError("no llama_cpp")

    monkeypatch.setattr(backends, "ensure_llama_cpp_server_installed", missing)
    with pytest.raises(NoModelServerError, match="kernelagent model install-server"):
        await lease(models)


async def test_a_server_that_cannot_load_reports_its_log(
    models: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT_CODE", "3")
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*failed to load model"):
        await lease(models)
    assert ps(models) == []
    monkeypatch.delenv("FAKE_EXIT_CODE")
    (await lease(models, idle_timeout=30)).close()  # and the next try starts cleanly
