"""Fixtures for the server extension's tests (imported by tests/test_server.py).

pytest-jupyter's fixtures are imported here by name rather than enabled with
``pytest_plugins = ["pytest_jupyter.jupyter_server"]``: that would register the plugin
for the whole run, and its ``pytest_pyfunc_call`` hook would then run every coroutine
test of the suite on its own loop (bypassing pytest-asyncio) and its autouse fixtures
would start a ServerApp around every test. Imported into the test module, the fixtures
(autouse ones included) apply to that module only. The tests are plain functions that
drive the server's loop with ``run(...)``, so pytest-asyncio never touches them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_jupyter.jupyter_server as _jupyter_server_plugin
from traitlets.config import Config

_FIXTURES = [
    "echo_kernel_spec",
    "http_server",
    "http_server_client",
    "http_server_port",
    "io_loop",
    "jp_argv",
    "jp_asyncio_loop",
    "jp_auth_header",
    "jp_base_url",
    "jp_config_dir",
    "jp_configurable_serverapp",
    "jp_data_dir",
    "jp_env_config_path",
    "jp_env_jupyter_path",
    "jp_environ",
    "jp_fetch",
    "jp_home_dir",
    "jp_http_port",
    "jp_kernel_dir",
    "jp_logging_stream",
    "jp_nbconvert_templates",
    "jp_root_dir",
    "jp_server_cleanup",
    "jp_serverapp",
    "jp_system_config_path",
    "jp_system_jupyter_path",
    "jp_template_dir",
    "jp_web_app",
    "jp_ws_fetch",
]
globals().update({name: getattr(_jupyter_server_plugin, name) for name in _FIXTURES})

T = TypeVar("T")
API = ("kernelagent", "api")
TIMEOUT = 180.0


@pytest.fixture
def ka_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A session store of this test's own."""
    home = tmp_path / "kernelagent-home"
    monkeypatch.setenv("KERNELAGENT_HOME", str(home))
    return home


@pytest.fixture
def jp_server_config(ka_home: Path) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"kernelagent.server": True}},
            "KernelAgentExtension": {"store_home": str(ka_home)},
        }
    )


@pytest.fixture
def jp_runtime_dir() -> Iterator[Path]:
    """A short runtime dir: the sandbox's ZMQ ipc socket paths must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ka-rt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    """Run a coroutine on the server's loop (where the sessions' tasks run too)."""

    def runner(awaitable: Awaitable[T]) -> T:
        return jp_asyncio_loop.run_until_complete(asyncio.wait_for(awaitable, TIMEOUT))

    return runner


class AgentApi:
    """The HTTP/WebSocket API as the panel uses it."""

    def __init__(self, fetch: Any, ws_fetch: Any, root_dir: Path) -> None:
        self.fetch = fetch
        self.ws_fetch = ws_fetch
        self.root_dir = root_dir

    async def call(self, method: str, *path: str, body: Any = None) -> tuple[int, Any]:
        if body is None and method != "GET":
            body = {}
        response = await self.fetch(
            *API,
            *path,
            method=method,
            body=json.dumps(body) if body is not None else None,
            raise_error=False,
            request_timeout=120,
        )
        return response.code, json.loads(response.body) if response.body else None

    async def create(self, **body: Any) -> dict[str, Any]:
        code, reply = await self.call("POST", "sessions", body=body)
        assert code == 201, reply
        return reply["session"]

    async def session(self, session_id: str) -> dict[str, Any]:
        code, reply = await self.call("GET", "sessions", session_id)
        assert code == 200, reply
        return reply

    async def wait_status(
        self, session_id: str, *statuses: str, timeout: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            session = (await self.session(session_id))["session"]
            if session["status"] in statuses:
                return session
            if time.monotonic() > deadline:
                raise AssertionError(f"session never reached {statuses}; it is {session}")
            await asyncio.sleep(0.2)

    async def events(
        self,
        session_id: str,
        since: int = 0,
        until: Callable[[dict[str, Any]], bool] = lambda event: event["type"] == "session_finished",
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        timeout: float = 150,
    ) -> list[dict[str, Any]]:
        """Events over the WebSocket from ``since`` until one matches ``until``."""
        socket = await self.ws_fetch(
            *API, "sessions", session_id, "events", params={"since": str(since)}
        )
        received: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            while True:
                message = await asyncio.wait_for(
                    socket.read_message(), max(1.0, deadline - time.monotonic())
                )
                assert message is not None, (
                    f"the socket closed after {[e['type'] for e in received]}"
                )
                event = json.loads(message)
                received.append(event)
                if on_event is not None:
                    await on_event(event)
                if until(event):
                    return received
        finally:
            socket.close()


@pytest.fixture
def agent_api(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path) -> AgentApi:
    return AgentApi(jp_fetch, jp_ws_fetch, Path(jp_root_dir))


__all__ = [
    *_FIXTURES,
    "AgentApi",
    "agent_api",
    "jp_runtime_dir",
    "jp_server_config",
    "ka_home",
    "run",
]
