"""OpenTelemetry traces of a session: a scripted model over HTTP, a real kernel in the
Docker sandbox, spans exported to the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import kernelagent.api as api
import kernelagent.telemetry as telemetry
from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.events import Usage
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

SCRIPT = [
    ScriptedTurn.python("x = 2\nprint('x is', x)", usage=Usage(input_tokens=120, output_tokens=12)),
    ScriptedTurn.python("raise ValueError('boom')", usage=Usage(input_tokens=150, output_tokens=9)),
    ScriptedTurn.shell("echo approved", usage=Usage(input_tokens=170, output_tokens=7)),
]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry.use_tracer_provider(provider)
    try:
        yield memory
    finally:
        telemetry.use_tracer_provider(None)
        provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return sorted(
        (span for span in spans if span.name.startswith(prefix)), key=lambda s: s.start_time or 0
    )


def test_a_session_is_traced_with_genai_spans(
    exporter: InMemorySpanExporter, docker_available: None, tmp_path: Path
) -> None:
    config = api.build_config(model="scripted-model", sandbox="docker")
    config.pool = False
    config.approval = ApprovalPolicy(mode="shell")
    with ScriptedModelServer(SCRIPT) as server:
        config.base_url = server.base_url
        result = api.run(
            "Compute x, then echo", config=config, store=SessionStore(tmp_path / "home")
        )
    assert result.status == "awaiting_approval"
    spans = exporter.get_finished_spans()

    (run,) = by_name(spans, "invoke_agent kernelagent")
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.request.model"] == "scripted-model"
    assert run.attributes["kernelagent.session.id"] == result.session_id
    assert run.attributes["kernelagent.status"] == "awaiting_approval"
    assert run.attributes["gen_ai.usage.input_tokens"] == 120 + 150 + 170

    children = [span for span in spans if span is not run]
    assert children and all(span.parent is not None for span in children)
    assert {span.parent.span_id for span in children if span.parent} == {run.context.span_id}
    assert {span.context.trace_id for span in spans} == {run.context.trace_id}

    calls = by_name(spans, "chat ")
    assert [span.name for span in calls] == ["chat scripted-model"] * 3
    assert [(s.attributes or {})["gen_ai.usage.input_tokens"] for s in calls] == [120, 150, 170]
    assert [(s.attributes or {})["gen_ai.usage.output_tokens"] for s in calls] == [12, 9, 7]
    first = calls[0].attributes or {}
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.request.model"] == "scripted-model"
    assert first["server.address"] == "127.0.0.1"
    assert all((span.end_time or 0) >= (span.start_time or 0) for span in calls)

    cells = by_name(spans, "execute_tool ")
    assert [span.name for span in cells] == ["execute_tool python", "execute_tool python"]
    ok, failed = (span.attributes or {} for span in cells)
    assert ok["kernelagent.cell.status"] == "ok" and ok["gen_ai.tool.name"] == "python"
    assert ok["kernelagent.cell.output_bytes"] > len("x is 2")
    assert ok["kernelagent.cell.duration_s"] >= 0
    assert failed["kernelagent.cell.status"] == "error"
    assert cells[1].status.status_code == StatusCode.ERROR

    (wait,) = by_name(spans, "await_approval ")
    assert wait.name == "await_approval shell"
    assert (wait.attributes or {})["kernelagent.approval.decision"] == "still waiting"
    assert "shell commands need approval" in str(
        (wait.attributes or {}).get("kernelagent.approval.reason")
    )
    assert wait.end_time == run.end_time


def test_tracing_is_off_and_imports_nothing_unless_configured(tmp_path: Path) -> None:
    probe = (
        "import sys, kernelagent.session.session, kernelagent.telemetry as t\n"
        "assert t.session_subscriber('m') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
