"""The Jupyter server's REST API as an attacker with a valid token would use it: point a
session at an endpoint of their choosing to collect the server's API key, ask for the
unisolated local sandbox, open egress beyond what the administrator permits, and read
internal details out of error replies.

A real Jupyter server (pytest-jupyter) with the extension configured like a deployment:
its own model endpoint (a scripted server on 127.0.0.1) and API key. Tests are plain
functions that drive the server's loop with ``run(...)`` (see tests/server_fixtures.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from traitlets.config import Config

from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.adversarial.conftest import Record
from tests.egress_servers import RecordingHTTPServer
from tests.server_fixtures import *  # noqa: F403 - pytest-jupyter's fixtures, for this module only
from tests.server_fixtures import AgentApi

SERVER_KEY = "sk-server-secret-do-not-leak"
PLACEHOLDER = "Bearer kernelagent-local"


class Endpoints:
    """The server's own model endpoint, a foreign one a request names, one an administrator
    listed with ``api_key: server``, and an HTTP server egress may reach."""

    def __init__(self) -> None:
        self.own = ScriptedModelServer([]).start()  # each test adds the turns it needs
        self.foreign = ScriptedModelServer(
            [ScriptedTurn.final("first answer"), ScriptedTurn.final("follow-up answer")]
        ).start()
        self.trusted = ScriptedModelServer([ScriptedTurn.final("trusted")]).start()
        self.data = RecordingHTTPServer()

    def close(self) -> None:
        for server in (self.own, self.foreign, self.trusted):
            server.stop()
        self.data.close()


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    running = Endpoints()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def jp_server_config(
    ka_home: Path, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> Config:
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_KEY)  # how servers are usually given their key
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"kernelagent.server": True}},
            "KernelAgentExtension": {
                "store_home": str(ka_home),
                "default_base_url": endpoints.own.base_url,
                "default_model": "scripted-model",
                "allowed_base_urls": [
                    {"url": endpoints.trusted.base_url, "api_key": "server"},
                    "http://127.0.0.1:*",
                ],
                "request_network_allow": [f"127.0.0.1:{endpoints.data.port}"],
            },
        }
    )


def authorizations(server: ScriptedModelServer) -> list[str]:
    return [request.headers.get("authorization", "") for request in server.requests]


def test_a_request_chosen_base_url_never_gets_the_server_key(
    docker_available: None, agent_api: AgentApi, run: Any, endpoints: Endpoints, record: Record
) -> None:
    """POST a session (and a follow-up) whose base_url is an endpoint the request chose"""
    record(
        expected="the chosen loopback endpoint gets only a placeholder key, in every request "
        "(model check, completions, follow-up); the server's own endpoint, and one the "
        "administrator listed with api_key: server, get the server's key"
    )

    endpoints.own.add_turns([ScriptedTurn.final("from the server's endpoint")])

    async def scenario() -> None:
        session = await agent_api.create(
            task="who gets my key?", base_url=endpoints.foreign.base_url
        )
        await agent_api.wait_status(session["id"], "completed")
        code, reply = await agent_api.call(
            "POST", "sessions", session["id"], "messages", body={"instruction": "and again"}
        )
        assert code == 202, reply
        await agent_api.wait_status(session["id"], "completed")
        for server in (endpoints.own, endpoints.trusted):
            other = await agent_api.create(
                task="own endpoint", base_url=None if server is endpoints.own else server.base_url
            )
            await agent_api.wait_status(other["id"], "completed")

    run(scenario())
    foreign, own, trusted = (
        authorizations(s) for s in (endpoints.foreign, endpoints.own, endpoints.trusted)
    )
    leaked = [value for value in foreign if SERVER_KEY in value]
    record(
        observed=f"foreign endpoint: {len(foreign)} requests, Authorization values "
        f"{sorted(set(foreign))}, "
        f"server key in {len(leaked)}; own endpoint: {len(own)} requests with the server key="
        f"{all(v == f'Bearer {SERVER_KEY}' for v in own)}; listed api_key: server: "
        f"{all(v == f'Bearer {SERVER_KEY}' for v in trusted)}"
    )
    assert len(foreign) >= 4 and set(foreign) == {PLACEHOLDER}
    assert own and set(own) == {f"Bearer {SERVER_KEY}"}
    assert trusted and set(trusted) == {f"Bearer {SERVER_KEY}"}


def test_an_unlisted_base_url_is_refused_before_any_request(
    agent_api: AgentApi, run: Any, endpoints: Endpoints, record: Record
) -> None:
    """POST sessions with base_url on another host, with credentials in the URL, and on https"""
    record(expected="400 naming allowed_base_urls and how to allow it; no request is made anywhere")
    replies = {}

    async def scenario() -> None:
        for url in (
            "http://models.example.invalid/v1",
            f"http://user:pw@127.0.0.1:{endpoints.foreign.port}/v1",
            "https://127.0.0.1:9/v1",
        ):
            replies[url] = await agent_api.call(
                "POST", "sessions", body={"task": "t", "base_url": url}
            )

    run(scenario())
    record(
        observed="; ".join(
            f"{url} -> {code} {reply['error'][:80]!r}" for url, (code, reply) in replies.items()
        )
        + f"; requests made: {len(endpoints.foreign.requests) + len(endpoints.own.requests)}"
    )
    assert all(code == 400 for code, _ in replies.values())
    refused = replies["http://models.example.invalid/v1"][1]
    assert (
        "not allowed by this server" in refused["error"] and "allowed_base_urls" in refused["hint"]
    )
    assert endpoints.foreign.requests == [] and endpoints.own.requests == []


def test_the_local_sandbox_and_extra_egress_need_the_administrator(
    agent_api: AgentApi, run: Any, endpoints: Endpoints, record: Record, jp_root_dir: Path
) -> None:
    """Ask for sandbox 'local' (session and replay) and for allow_net beyond
    request_network_allow"""
    record(expected="403 for each, saying which server setting allows it; no session is created")
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), jp_root_dir / "n.ipynb"
    )
    replies: dict[str, tuple[int, Any]] = {}

    async def scenario() -> None:
        replies["local session"] = await agent_api.call(
            "POST", "sessions", body={"task": "t", "sandbox": "local"}
        )
        replies["local replay"] = await agent_api.call(
            "POST", "replay", body={"path": "n.ipynb", "sandbox": "local"}
        )
        replies["allow_net 169.254.169.254"] = await agent_api.call(
            "POST", "sessions", body={"task": "t", "allow_net": ["169.254.169.254:80"]}
        )
        replies["allow_net *:*"] = await agent_api.call(
            "POST", "sessions", body={"task": "t", "allow_net": ["127.0.0.0/8:*"]}
        )
        replies["listing"] = await agent_api.call("GET", "sessions")

    run(scenario())
    listing = replies.pop("listing")[1]
    record(
        observed="; ".join(
            f"{k} -> {code} {reply['error'][:70]!r} (hint: {reply['hint'][:60]!r})"
            for k, (code, reply) in replies.items()
        )
        + f"; sessions={len(listing['sessions'])}"
    )
    assert [code for code, _ in replies.values()] == [403, 403, 403, 403]
    assert "allow_local_sandbox=True" in replies["local session"][1]["hint"]
    assert "request_network_allow" in replies["allow_net 169.254.169.254"][1]["hint"]
    assert listing["sessions"] == [] and endpoints.own.requests == []


def test_rest_allow_net_within_the_limit_is_audited_in_the_notebook(
    docker_available: None,
    agent_api: AgentApi,
    run: Any,
    endpoints: Endpoints,
    record: Record,
    jp_root_dir: Path,
) -> None:
    """POST a session with allow_net the administrator permits; its cell fetches the allowed server
    and an unlisted one"""
    record(
        expected="the allowed fetch answers, the other gets 403; the cell's "
        "metadata.kernelagent.egress "
        "and the WebSocket's egress events have both; the notebook names the sandbox kernelspec"
    )
    allowed = f"127.0.0.1:{endpoints.data.port}"
    code = (
        f"import urllib.request\nprint(urllib.request.urlopen('http://{allowed}/rows.csv', "
        f"timeout=20).read())\n"
        "try:\n    urllib.request.urlopen('http://127.0.0.1:9/', timeout=20)\n"
        "except Exception as error:\n    print('refused', error)"
    )
    endpoints.own.add_turns([ScriptedTurn.python(code), ScriptedTurn.final("fetched")])
    events: list[dict[str, Any]] = []

    async def scenario() -> None:
        session = await agent_api.create(task="fetch rows", allow_net=[allowed])
        events.extend(await agent_api.events(session["id"]))
        events.append({"notebook": session["notebook"]})

    run(scenario())
    notebook = nbformat.read(jp_root_dir / events.pop()["notebook"], as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    audit = cell.metadata.kernelagent.get("egress", [])
    egress_events = [e for e in events if e["type"] == "egress"]
    record(
        observed=f"cell printed {cell.outputs[0]['text'].strip()[:120]!r}; metadata egress="
        f"{[(r['decision'], r['port']) for r in audit]}; egress events={len(egress_events)}; "
        f"kernelspec={notebook.metadata.kernelspec.name}"
    )
    assert (
        "b'hello /rows.csv'" in cell.outputs[0]["text"]
        and "refused HTTP Error 403" in cell.outputs[0]["text"]
    )
    assert sorted((r["decision"], r["port"]) for r in audit) == [
        ("allowed", endpoints.data.port),
        ("refused", 9),
    ]
    assert all(e["cell_id"] == cell.id for e in egress_events) and len(egress_events) == 2
    assert notebook.metadata.kernelagent.network_allow == [allowed]
    assert notebook.metadata.kernelspec.name == "kernelagent"


def test_internal_errors_reach_the_client_without_their_detail(
    agent_api: AgentApi,
    run: Any,
    jp_serverapp: Any,
    monkeypatch: pytest.MonkeyPatch,
    record: Record,
) -> None:
    """Make a handler fail with an exception whose text holds a secret and a host path"""
    record(
        expected="500 with a generic message and a pointer to the server log; the detail only in "
        "the log"
    )
    extension = jp_serverapp.web_app.settings["kernelagent"]

    def broken() -> list[Any]:
        raise RuntimeError("password=hunter2 in /srv/secret/config.db")

    monkeypatch.setattr(extension.manager, "list_sessions", broken)
    code, reply = run(agent_api.call("GET", "sessions"))
    record(observed=f"{code} {reply}")
    assert code == 500
    assert reply == {
        "error": "internal server error",
        "hint": "see the Jupyter server log for the details",
        "message": "internal server error",
    }
