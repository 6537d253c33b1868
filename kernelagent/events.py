"""The typed event stream of a session.

One union describes everything that happens in a session. The CLI renders it, the
recorder writes it into the notebook, the server sends it over the WebSocket.
Every event carries the session id and a per-session sequence number (assigned by
the session when it emits the event), so a client that reconnects can catch up.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema

from kernelagent.literals import ActionKind, CellKind, CellStatus, SessionStatus


def code_sha256(code: str) -> str:
    """The hash an approval is bound to: the exact code (or command) that was shown."""
    return hashlib.sha256(code.encode()).hexdigest()


NotebookOutput = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "additionalProperties": True, "tsType": "IOutput"}),
]
"""An nbformat v4 output dict (stream, display_data, execute_result, error)."""


class Usage(BaseModel):
    """Tokens used by model calls, summed over a session."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            requests=self.requests + other.requests,
        )


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = ""
    seq: int = 0
    time: float = Field(default_factory=time.time)
    attempt: int | None = None
    """Set on events of a parallel attempt (2, 3, ...) forwarded to the session's stream;
    None for the session's own line of work (attempt 1)."""


class SessionStarted(_Event):
    type: Literal["session_started"] = "session_started"
    task: str
    model: str
    sandbox: str
    image: str | None = None
    workspace: str
    notebook_path: str


class StatusChanged(_Event):
    type: Literal["status_changed"] = "status_changed"
    status: SessionStatus
    reason: str = ""


class UserMessage(_Event):
    """A task or follow-up instruction from a person."""

    type: Literal["user_message"] = "user_message"
    text: str


class AssistantText(_Event):
    """Text the model said (complete, not a delta)."""

    type: Literal["assistant_text"] = "assistant_text"
    text: str


class AssistantTextDelta(_Event):
    """A streamed fragment of assistant text; not recorded, only rendered live."""

    type: Literal["assistant_text_delta"] = "assistant_text_delta"
    delta: str


class CellStarted(_Event):
    type: Literal["cell_started"] = "cell_started"
    cell_id: str
    tool_call_id: str
    kind: CellKind
    code: str
    """The cell source as recorded (shell commands as a ``%%bash`` cell)."""


class CellOutput(_Event):
    type: Literal["output"] = "output"
    cell_id: str
    output: NotebookOutput


class CellFinished(_Event):
    type: Literal["cell_finished"] = "cell_finished"
    cell_id: str
    status: CellStatus
    outputs: list[NotebookOutput]
    """All outputs the cell kept, in order (after clear_output and capping)."""
    execution_count: int | None = None
    started_at: float
    finished_at: float
    truncated: bool = False
    detail: str = ""
    """Why a cell did not end ok: the timeout, the kernel's death reason, ..."""
    manifest: list[dict[str, Any]] | None = None
    """Names the cell defined or changed, with type and fingerprint."""


class DisplayUpdated(_Event):
    """A later cell updated displays of an earlier one (``handle.update(...)`` on a
    ``display(..., display_id=True)`` handle): the earlier cell's outputs as they are now."""

    type: Literal["display_updated"] = "display_updated"
    cell_id: str
    outputs: list[NotebookOutput]


class ApprovalRequested(_Event):
    type: Literal["approval_requested"] = "approval_requested"
    cell_id: str
    tool_call_id: str
    kind: ActionKind
    code: str
    code_sha256: str
    reason: str


class ApprovalDecided(_Event):
    type: Literal["approval_decided"] = "approval_decided"
    cell_id: str
    decision: Literal["approved", "edited", "rejected"]
    decided_by: str
    code: str
    reason: str = ""


class KernelRestarted(_Event):
    """The kernel died or was replaced; state was restored by replay where possible."""

    type: Literal["kernel_restarted"] = "kernel_restarted"
    reason: str
    restored_cells: int = 0


class EgressRequest(_Event):
    """A request the sandbox made through its egress proxy, allowed or refused (only
    sandboxes with ``network_allow`` have one). Emitted when the request ends."""

    type: Literal["egress"] = "egress"
    cell_id: str | None = None
    """The cell that was running when the request started (None: between cells)."""
    request: Annotated[
        dict[str, Any],
        WithJsonSchema({"type": "object", "additionalProperties": True, "tsType": "IEgressRecord"}),
    ]
    """method, host, port, decision, reason, bytes_up, bytes_down, time, duration, ...
    (``EgressRecord.as_dict()``)."""


class UsageUpdated(_Event):
    type: Literal["usage"] = "usage"
    usage: Usage
    total: Usage


class Error(_Event):
    """Something went wrong that the session reports but may survive."""

    type: Literal["error"] = "error"
    message: str
    hint: str = ""


class ActionSkipped(_Event):
    """The model sent code identical to a cell that already failed on the same kernel state,
    or to the cell that just ran (nothing changed since); it was not run again."""

    type: Literal["action_skipped"] = "action_skipped"
    tool_call_id: str
    kind: CellKind
    code: str
    code_sha256: str
    same_as_cell: str
    """The id of the cell it repeats."""
    repeats: Literal["failed", "just_ran"] = "failed"
    """A cell that failed, or the successful cell that ran just before."""
    error: str
    """How that cell failed ('' for ``just_ran``)."""
    next_temperature: float | None = None
    """The sampling temperature of the model's next try."""


AnswerVerdict = Literal[
    "accepted",
    "no_evidence",
    "reports_failure",
    "not_shown",
    "before_output",
    "not_what_was_asked",
    "verify",
    "from_output",
]


class AnswerReviewed(_Event):
    """What the loop did with a final answer: accepted it, or sent it back and why."""

    type: Literal["answer_reviewed"] = "answer_reviewed"
    answer: str
    verdict: AnswerVerdict
    detail: str = ""


class AttemptStarted(_Event):
    type: Literal["attempt_started"] = "attempt_started"
    number: int
    of: int
    temperature: float | None = None
    notebook_path: str


class AttemptFinished(_Event):
    type: Literal["attempt_finished"] = "attempt_finished"
    number: int
    status: SessionStatus
    answer: str | None = None
    grounded: bool = False
    """Whether every part of the answer appears in an output of the attempt's own cells."""
    reason: str = ""
    last_error: str = ""
    notebook_path: str


class VoteDecided(_Event):
    """How the parallel attempts' answers were combined into the session's answer."""

    type: Literal["vote_decided"] = "vote_decided"
    chosen: int | None
    """The attempt whose cells and answer the session keeps (None: no attempt answered)."""
    answer: str | None = None
    agreeing: list[int] = Field(default_factory=list)
    attempts: int
    majority: bool
    summary: str
    """One sentence a person reads, e.g. "2 of 3 attempts agree; attempt 3 answered 12.4"."""
    notebooks: list[str] = Field(default_factory=list)
    """Each attempt's notebook (attempt 1 first), relative to the session notebook."""


class SessionFinished(_Event):
    type: Literal["session_finished"] = "session_finished"
    status: SessionStatus
    answer: str | None = None
    reason: str = ""
    usage: Usage = Field(default_factory=Usage)


class ModelRetrying(_Event):
    """A model request failed in transport (an empty or broken-off stream, a reset
    connection, 502/503/504, a timeout) and is tried again: not a model turn."""

    type: Literal["model_retrying"] = "model_retrying"
    retry: int
    """Which retry this is (1-based)."""
    retries: int
    """How many retries are allowed before the session fails."""
    reason: str
    delay: float
    """Seconds waited before this retry."""

    @property
    def message(self) -> str:
        return f"model server busy, retrying {self.retry}/{self.retries}"


class HostToolCalled(_Event):
    """The model called a tool that runs on the host (memory, an MCP server's tool)."""

    type: Literal["host_tool_called"] = "host_tool_called"
    cell_id: str
    """The markdown cell that records the call."""
    tool_call_id: str
    tool: str
    source: str
    """Who provides the tool, e.g. ``memory`` or ``mcp:<server>``."""
    arguments: dict[str, Any]


class HostToolFinished(_Event):
    type: Literal["host_tool_finished"] = "host_tool_finished"
    cell_id: str
    tool: str
    source: str
    text: str
    """The result as the model reads it."""
    is_error: bool = False
    images: int = 0
    """How many images came back with the result."""
    duration: float
    metadata: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    SessionStarted
    | StatusChanged
    | UserMessage
    | AssistantText
    | AssistantTextDelta
    | CellStarted
    | CellOutput
    | CellFinished
    | DisplayUpdated
    | ApprovalRequested
    | ApprovalDecided
    | KernelRestarted
    | EgressRequest
    | UsageUpdated
    | Error
    | ActionSkipped
    | AnswerReviewed
    | AttemptStarted
    | AttemptFinished
    | VoteDecided
    | SessionFinished
    | ModelRetrying
    | HostToolCalled
    | HostToolFinished,
    Field(discriminator="type"),
]

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: str | bytes | dict[str, Any]) -> Event:
    """Parse an event from its JSON form (as sent over the WebSocket)."""
    if isinstance(data, dict):
        return event_adapter.validate_python(data)
    return event_adapter.validate_json(data)
