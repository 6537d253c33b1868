"""Spans from one session's event stream (a subscriber: the loop does not know of it).

    invoke_agent kernelagent          a session run: from its start (or the first event of a
                                      resumed run) to ``session_finished``
      chat <model>                    a model call: from the loop's previous event to the
                                      usage the reply reported (one ``usage`` event per call)
      execute_tool python|shell       a cell: its recorded start and end
      execute_tool <host tool>        a host tool's call (memory, an MCP server's tool)
      await_approval python|shell     from ``approval_requested`` to the decision (or to the
                                      end of the run, when the session stops to wait)

Attribute names follow the OpenTelemetry GenAI semantic conventions where they apply
(``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ...);
kernelagent's own are under ``kernelagent.``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from kernelagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    AssistantTextDelta,
    CellFinished,
    CellStarted,
    EgressRequest,
    Event,
    HostToolCalled,
    HostToolFinished,
    ModelRetrying,
    SessionFinished,
    SessionStarted,
    UsageUpdated,
)

DURING_A_MODEL_CALL = (AssistantTextDelta, ModelRetrying, EgressRequest)
"""Events that do not mark the start of the next model call."""


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class SessionSpans:
    def __init__(self, tracer: trace.Tracer, *, model: str, base_url: str | None) -> None:
        self.tracer = tracer
        self.model = model
        self.server = urlparse(base_url).hostname if base_url else "api.openai.com"
        self.run: trace.Span | None = None
        self._context: Any = None
        self._last_event = 0.0
        self._first_delta: float | None = None
        self._retries = 0
        self._cells: dict[str, CellStarted] = {}
        self._waits: dict[str, trace.Span] = {}
        self._host_calls: dict[str, HostToolCalled] = {}

    def __call__(self, event: Event) -> None:
        if event.attempt is not None:
            return  # a parallel attempt's events: its own session reports them
        if self.run is None:
            self._start_run(event)
        match event:
            case UsageUpdated():
                self._model_call(event)
            case AssistantTextDelta():
                self._first_delta = self._first_delta or event.time
            case ModelRetrying():
                self._retries += 1
            case CellStarted():
                self._cells[event.cell_id] = event
            case CellFinished():
                self._cell(event)
            case HostToolCalled():
                self._host_calls[event.cell_id] = event
            case HostToolFinished():
                self._host_tool(event)
            case ApprovalRequested():
                self._wait_started(event)
            case ApprovalDecided():
                self._wait_ended(event.cell_id, event.decision, event.time, event.decided_by)
            case SessionFinished():
                self._finish_run(event)
        if not isinstance(event, DURING_A_MODEL_CALL):
            self._last_event = event.time

    # -- the session run ----------------------------------------------------------------

    def _start_run(self, event: Event) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "kernelagent",
            "gen_ai.request.model": self.model,
            "kernelagent.session.id": event.session_id,
        }
        if isinstance(event, SessionStarted):
            attributes |= {
                "kernelagent.task": event.task[:1000],
                "kernelagent.sandbox": event.sandbox,
                "kernelagent.notebook": event.notebook_path,
            }
        else:
            attributes["kernelagent.resumed"] = True
        self.run = self.tracer.start_span(
            "invoke_agent kernelagent", start_time=_ns(event.time), attributes=attributes
        )
        self._context = trace.set_span_in_context(self.run)

    def _finish_run(self, event: SessionFinished) -> None:
        assert self.run is not None
        for cell_id in list(self._waits):
            self._wait_ended(cell_id, "still waiting", event.time, "")
        self.run.set_attributes(
            {
                "kernelagent.status": event.status,
                "kernelagent.reason": event.reason[:1000],
                "gen_ai.usage.input_tokens": event.usage.input_tokens,
                "gen_ai.usage.output_tokens": event.usage.output_tokens,
                "kernelagent.model_requests": event.usage.requests,
            }
        )
        if event.status == "failed":
            self.run.set_status(Status(StatusCode.ERROR, event.reason[:200]))
        self.run.end(end_time=_ns(event.time))
        self.run = None

    # -- children ------------------------------------------------------------------------

    def _model_call(self, event: UsageUpdated) -> None:
        start = self._last_event or event.time
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": self.model,
            "server.address": self.server or "",
            "gen_ai.usage.input_tokens": event.usage.input_tokens,
            "gen_ai.usage.output_tokens": event.usage.output_tokens,
            "kernelagent.model.latency_s": round(event.time - start, 6),
            "kernelagent.model.retries": self._retries,
        }
        if event.usage.cached_input_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = event.usage.cached_input_tokens
        if self._first_delta is not None:
            attributes["kernelagent.model.time_to_first_token_s"] = round(
                self._first_delta - start, 6
            )
        span = self.tracer.start_span(
            f"chat {self.model}",
            context=self._context,
            kind=SpanKind.CLIENT,
            start_time=_ns(start),
            attributes=attributes,
        )
        span.end(end_time=_ns(event.time))
        self._first_delta, self._retries = None, 0

    def _cell(self, event: CellFinished) -> None:
        started = self._cells.pop(event.cell_id, None)
        kind = started.kind if started else "python"
        output_bytes = sum(len(json.dumps(output)) for output in event.outputs)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": kind,
            "kernelagent.cell.id": event.cell_id,
            "kernelagent.cell.status": event.status,
            "kernelagent.cell.duration_s": round(event.finished_at - event.started_at, 6),
            "kernelagent.cell.output_bytes": output_bytes,
            "kernelagent.cell.truncated": event.truncated,
        }
        if started is not None:
            attributes["gen_ai.tool.call.id"] = started.tool_call_id
        if event.execution_count is not None:
            attributes["kernelagent.cell.execution_count"] = event.execution_count
        span = self.tracer.start_span(
            f"execute_tool {kind}",
            context=self._context,
            start_time=_ns(event.started_at),
            attributes=attributes,
        )
        if event.status != "ok":
            span.set_status(Status(StatusCode.ERROR, event.detail[:200] or event.status))
        span.end(end_time=_ns(event.finished_at))

    def _host_tool(self, event: HostToolFinished) -> None:
        called = self._host_calls.pop(event.cell_id, None)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.tool,
            "kernelagent.host_tool.source": event.source,
            "kernelagent.host_tool.result_chars": len(event.text),
        }
        if called is not None:
            attributes["gen_ai.tool.call.id"] = called.tool_call_id
        span = self.tracer.start_span(
            f"execute_tool {event.tool}",
            context=self._context,
            start_time=_ns(event.time - event.duration),
            attributes=attributes,
        )
        if event.is_error:
            span.set_status(Status(StatusCode.ERROR, event.text[:200]))
        span.end(end_time=_ns(event.time))

    def _wait_started(self, event: ApprovalRequested) -> None:
        self._waits[event.cell_id] = self.tracer.start_span(
            f"await_approval {event.kind}",
            context=self._context,
            start_time=_ns(event.time),
            attributes={
                "kernelagent.cell.id": event.cell_id,
                "gen_ai.tool.call.id": event.tool_call_id,
                "kernelagent.approval.reason": event.reason[:1000],
                "kernelagent.approval.code_sha256": event.code_sha256,
            },
        )

    def _wait_ended(self, cell_id: str, decision: str, at: float, decided_by: str) -> None:
        span = self._waits.pop(cell_id, None)
        if span is None:
            return  # requested in another process (before a resume)
        span.set_attributes(
            {
                "kernelagent.approval.decision": decision,
                "kernelagent.approval.decided_by": decided_by,
            }
        )
        span.end(end_time=_ns(at))
