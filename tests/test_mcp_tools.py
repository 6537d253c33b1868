"""kernelagent's own agent with an MCP server's tools (host tools): a scripted model over
HTTP, a small stdio MCP server written for the test, a real kernel in the Docker sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

import kernelagent.api as api
from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.session.durable import decide
from kernelagent.session.mcp_servers import McpConfigError, configured_servers, parse_option
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.test_telemetry import InMemorySpanExporter, exporter  # noqa: F401  (a fixture)

PRICE_SERVER = Path(__file__).parent / "mcp_price_server.py"
SERVER_OPTION = f"prices={sys.executable} {PRICE_SERVER}"

SCRIPT = [
    ScriptedTurn(tool_calls=[ScriptedToolCall(name="price", arguments={"item": "apple"})]),
    ScriptedTurn.python("cents = 42\nprint('apple:', cents)"),
    ScriptedTurn.final("42"),
]


def host_tool_cells(path: Path) -> list[dict]:
    notebook = nbformat.read(path, as_version=4)
    return [
        cell.metadata.kernelagent.host_tool
        for cell in notebook.cells
        if "host_tool" in cell.metadata.get("kernelagent", {})
    ]


def test_the_agent_calls_an_mcp_servers_tool_on_the_host(
    docker_available: None,
    tmp_path: Path,
    exporter: InMemorySpanExporter,  # noqa: F811
) -> None:
    config = api.build_config(model="scripted-model", sandbox="docker")
    config.pool = False
    config.mcp_servers = [SERVER_OPTION]
    with ScriptedModelServer(SCRIPT) as server:
        config.base_url = server.base_url
        result = api.run("What does an apple cost?", config=config, store=SessionStore(tmp_path))
        requests = server.completion_requests()
    assert result.status == "completed" and result.answer == "42", result.reason
    offered = [tool.get("name") for tool in requests[0].body["tools"]]
    assert "price" in offered and "python" in offered
    assert f"parent {os.getpid()})" in json.dumps(requests[1].body)  # ran here, on the host

    (call,) = host_tool_cells(result.notebook_path)
    assert call["tool"] == "price" and call["source"] == "mcp:prices"
    assert call["arguments"] == {"item": "apple"}
    assert call["result"].startswith("apple costs 42 cents") and not call["is_error"]
    stored = SessionStore(tmp_path).get(result.session_id).config
    assert stored["mcp_servers"] == [SERVER_OPTION]
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "execute_tool price"]
    assert (span.attributes or {})["kernelagent.host_tool.source"] == "mcp:prices"


def test_an_mcp_tool_call_waits_for_approval_and_runs_after_it(
    docker_available: None, tmp_path: Path
) -> None:
    config = api.build_config(model="scripted-model", sandbox="docker")
    config.pool = False
    config.mcp_servers = [SERVER_OPTION]
    config.approval = ApprovalPolicy(patterns=[r"^price "])
    store = SessionStore(tmp_path)
    with ScriptedModelServer(SCRIPT) as server:
        config.base_url = server.base_url
        first = api.run("What does an apple cost?", config=config, store=store)
        assert first.status == "awaiting_approval"
        assert host_tool_cells(first.notebook_path)[0].get("result") is None
        decision = decide(store.get(first.session_id), "approved", decided_by="tester@host")
        resumed = asyncio.run(api.aresume(first.session_id, decision=decision, store=store))
    assert resumed.status == "completed", resumed.reason
    (call,) = host_tool_cells(resumed.notebook_path)
    assert call["result"].startswith("apple costs 42 cents")


def test_mcp_server_options_and_config_files(tmp_path: Path) -> None:
    assert parse_option("python3 -m my_server --port 1").name == "my_server"
    remote = parse_option("docs=http://127.0.0.1:9000/mcp")
    assert (remote.name, remote.transport, remote.url) == ("docs", "http", remote.url)
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "files": {"command": "npx", "args": ["-y", "fs"], "env": {"K": "secret"}},
                    "remote": {"url": "http://127.0.0.1:9/mcp", "headers": {"A": "b"}},
                }
            }
        )
    )
    specs = configured_servers([SERVER_OPTION], str(config))
    assert [(s.name, s.transport) for s in specs] == [
        ("prices", "stdio"),
        ("files", "stdio"),
        ("remote", "http"),
    ]
    assert specs[1].env == {"K": "secret"}
    with pytest.raises(McpConfigError, match="two MCP servers are named prices"):
        configured_servers([SERVER_OPTION, SERVER_OPTION], None)
    config.write_text("{}")
    with pytest.raises(McpConfigError, match='no "mcpServers" object'):
        configured_servers([], str(config))
