"""Host tools (memory, MCP servers' tools): offered to the model on every API path, run on
the host through the approval rules, recorded as one markdown cell per call.

A provider written here plays the part of memory or an MCP server; the model is the
scripted server over HTTP, the kernel a real one in the Docker sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

import kernelagent.api as api
from kernelagent.agent.codeblock_model import parse_reply, protocol_instructions, render_tool_call
from kernelagent.agent.host_tools import HostToolError, HostToolResult, HostTools
from kernelagent.agent.model import ToolCall, ToolSpec
from kernelagent.agent.tools import TOOLS, ToolArgumentError, parse_call
from kernelagent.events import HostToolFinished
from kernelagent.session import host_tool_setup
from kernelagent.session.durable import decide
from kernelagent.session.host_tool_setup import HostToolContext
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn

UNITS_SPEC = ToolSpec(
    name="unit_of",
    description="The unit a column of the data is measured in.",
    parameters={
        "type": "object",
        "properties": {"column": {"type": "string"}},
        "required": ["column"],
    },
)


class UnitsTool:
    """Knows one fact, and fails for anything else (a provider's error)."""

    spec = UNITS_SPEC
    source = "test-units"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def call(self, arguments: dict[str, Any]) -> HostToolResult:
        self.calls.append(arguments)
        if arguments.get("column") == "revenue":
            return HostToolResult(text="revenue is in EUR", metadata={"confidence": "high"})
        raise HostToolError(f"no unit known for {arguments.get('column')!r}")


@pytest.fixture
def units_tool() -> Iterator[UnitsTool]:
    tool = UnitsTool()
    contexts: list[HostToolContext] = []

    async def provide(context: HostToolContext, tools: HostTools) -> None:
        contexts.append(context)
        tools.add(tool)

    host_tool_setup.PROVIDERS.append(provide)
    try:
        yield tool
    finally:
        host_tool_setup.PROVIDERS.remove(provide)
    assert all(context.workspace.is_dir() for context in contexts)


def call(name: str, **arguments: Any) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=[ScriptedToolCall(name=name, arguments=arguments)])


def host_tool_cells(notebook: Path) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    return [c for c in nb.cells if "host_tool" in c.metadata.get("kernelagent", {})]


# -- no Docker: the toolbox, parsing, the code-block protocol -----------------------------


def test_toolbox_refuses_reserved_and_duplicate_names() -> None:
    tools = HostTools([UnitsTool()])
    with pytest.raises(HostToolError, match="cannot be called 'python'"):
        tools.add(type("Shadow", (), {"spec": TOOLS[0], "source": "x"})())  # type: ignore[arg-type]
    with pytest.raises(HostToolError, match="two host tools are called 'unit_of'"):
        tools.add(UnitsTool())
    assert [spec.name for spec in tools.specs()] == ["unit_of"]


def test_calls_to_host_tools_are_parsed_and_unknown_tools_named() -> None:
    tools = HostTools([UnitsTool()])
    action = parse_call(ToolCall(id="c1", name="unit_of", arguments='{"column": "x"}'), tools)
    assert (action.kind, action.text, action.arguments) == ("host_tool", "unit_of", {"column": "x"})
    with pytest.raises(ToolArgumentError, match="not valid JSON"):
        parse_call(ToolCall(id="c2", name="unit_of", arguments="{column"), tools)
    with pytest.raises(ToolArgumentError, match=r"Available tools: .*unit_of"):
        parse_call(ToolCall(id="c3", name="recall", arguments="{}"), tools)


def test_code_block_protocol_documents_and_parses_tool_blocks() -> None:
    instructions = protocol_instructions([*TOOLS, UNITS_SPEC])
    assert "```tool unit_of" in instructions and "The unit a column" in instructions
    reply = parse_reply('Let me check.\n```tool unit_of\n{"column": "revenue"}\n```\n')
    assert (reply.action, reply.tool, json.loads(reply.payload)) == (
        "host_tool",
        "unit_of",
        {"column": "revenue"},
    )
    assert reply.prose == "Let me check."
    rendered = render_tool_call(ToolCall(id="cb_1", name="unit_of", arguments='{"column": "a"}'))
    assert parse_reply(rendered).tool == "unit_of"
    # a python block still wins when it comes first
    assert parse_reply("```python\nx = 1\n```\n```tool unit_of\n{}\n```").action == "python"


# -- real sessions --------------------------------------------------------------------


@pytest.mark.parametrize("api_kind", ["responses", "code-blocks"])
def test_a_host_tool_call_reaches_the_model_and_the_notebook(
    docker_available: None, tmp_path: Path, units_tool: UnitsTool, api_kind: str
) -> None:
    if api_kind == "responses":
        script = [
            call("unit_of", column="revenue"),
            call("unit_of", column="units"),
            ScriptedTurn.final("EUR"),
        ]
    else:
        script = [
            ScriptedTurn.say('```tool unit_of\n{"column": "revenue"}\n```'),
            ScriptedTurn.say('```tool unit_of\n{"column": "units"}\n```'),
            ScriptedTurn.say("FINAL ANSWER: EUR"),
        ]
    finished: list[HostToolFinished] = []
    with ScriptedModelServer(script) as server:
        result = api.run(
            "What currency is revenue in?",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
            base_url=server.base_url,
            model="scripted-model",
            api=api_kind,
            on_event=lambda e: finished.append(e) if isinstance(e, HostToolFinished) else None,
        )
        requests = server.completion_requests()
    assert result.status == "completed" and result.answer == "EUR"
    assert units_tool.calls == [{"column": "revenue"}, {"column": "units"}]
    first, second, third = (json.dumps(r.body) for r in requests)
    if api_kind == "responses":
        assert '"name": "unit_of"' in first  # offered as a function tool
    else:
        assert "```tool " in first and "- unit_of: The unit" in first  # documented in the prompt
    assert "revenue is in EUR" in second
    assert "no unit known for 'units'" in third  # an error goes back to the model
    assert [(e.tool, e.source, e.is_error) for e in finished] == [
        ("unit_of", "test-units", False),
        ("unit_of", "test-units", True),
    ]

    cells = host_tool_cells(tmp_path / "s.ipynb")
    assert [c.cell_type for c in cells] == ["markdown", "markdown"]
    recorded = [c.metadata.kernelagent for c in cells]
    assert [r["status"] for r in recorded] == ["ok", "error"]
    assert recorded[0]["host_tool"]["arguments"] == {"column": "revenue"}
    assert recorded[0]["host_tool"]["result"] == "revenue is in EUR"
    assert recorded[0]["host_tool"]["metadata"] == {"confidence": "high"}
    assert "**Tool call:** `unit_of` (test-units)" in cells[0].source
    assert "> revenue is in EUR" in cells[0].source


async def test_a_host_tool_call_waits_for_approval_and_runs_once_approved(
    docker_available: None, tmp_path: Path, units_tool: UnitsTool
) -> None:
    store = SessionStore(tmp_path / "home")
    script = [call("unit_of", column="revenue"), ScriptedTurn.final("EUR")]
    with ScriptedModelServer(script) as server:
        options: dict[str, Any] = dict(base_url=server.base_url, model="scripted-model")
        waiting = await api.arun(
            "What currency is revenue in?",
            workspace=tmp_path / "ws",
            store=store,
            approve="always",
            **options,
        )
        assert waiting.status == "awaiting_approval" and units_tool.calls == []
        record = store.get(waiting.session_id)
        assert record.pending is not None and record.pending.kind == "host_tool"
        assert record.pending.code == 'unit_of {"column": "revenue"}'
        cells = host_tool_cells(record.notebook)
        assert cells[0].metadata.kernelagent["status"] == "awaiting_approval"

        done = await api.aresume(
            waiting.session_id, decision=decide(record, "approved"), store=store, **options
        )
    assert done.status == "completed" and units_tool.calls == [{"column": "revenue"}]
    (cell,) = host_tool_cells(record.notebook)
    info = cell.metadata.kernelagent
    assert info["status"] == "ok" and info["host_tool"]["result"] == "revenue is in EUR"
    assert [a["decision"] for a in info["approval"]] == ["requested", "approved"]
