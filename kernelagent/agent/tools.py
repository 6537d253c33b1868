"""The tools the model gets, and parsing of the arguments it sends for them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from kernelagent.agent.host_tools import HostTools
from kernelagent.agent.model import ToolCall, ToolSpec
from kernelagent.errors import KernelAgentError
from kernelagent.literals import CellKind

PYTHON = ToolSpec(
    name="python",
    description=(
        "Run Python code as a new cell in your persistent Jupyter kernel. Variables, imports "
        "and files persist between calls. The value of the last expression is shown, as in a "
        "notebook; print what you need to see. Plots made with matplotlib are captured."
    ),
    parameters={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source of the cell."}},
        "required": ["code"],
        "additionalProperties": False,
    },
)

SHELL = ToolSpec(
    name="shell",
    description=(
        "Run a bash command in the same sandbox (same workspace directory as the kernel). "
        "Use it for files and system tools; use python for data work."
    ),
    parameters={
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The bash command line."},
            "timeout": {
                "type": "number",
                "description": "Seconds before it is stopped (optional).",
            },
        },
        "required": ["command"],
        "additionalProperties": False,
    },
)

FINAL_ANSWER = ToolSpec(
    name="final_answer",
    description="Finish the task with your final answer, in the format the task asks for.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "The final answer."}},
        "required": ["answer"],
        "additionalProperties": False,
    },
)

TOOLS = [PYTHON, SHELL, FINAL_ANSWER]


class ToolArgumentError(KernelAgentError, ValueError):
    """The model's call cannot be run; the message goes back to the model."""


@dataclass
class Action:
    kind: Literal["python", "shell", "final_answer", "host_tool"]
    text: str
    """The code, the command, the answer, or the host tool's name."""
    timeout: float | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    """A host tool's arguments."""

    @property
    def cell_kind(self) -> CellKind:
        """The kind of cell the action runs as; a final answer or host tool runs no cell."""
        if self.kind in ("final_answer", "host_tool"):
            raise ValueError(f"a {self.kind} action does not run as a cell")
        return self.kind  # type: ignore[return-value]


def parse_call(call: ToolCall, host_tools: HostTools | None = None) -> Action:
    """Check a tool call and turn it into an action, or explain to the model what is wrong."""
    known = {tool.name for tool in TOOLS}
    if host_tools is not None and host_tools.get(call.name) is not None:
        return Action(kind="host_tool", text=call.name, arguments=_host_arguments(call))
    if call.name not in known:
        known |= {spec.name for spec in host_tools.specs()} if host_tools else set()
        raise ToolArgumentError(
            f"Unknown tool {call.name!r}. Available tools: {', '.join(sorted(known))}."
        )
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as error:
        raise ToolArgumentError(
            f"The arguments of {call.name} are not valid JSON ({error.msg} at position "
            f"{error.pos}). "
            'Send a JSON object, e.g. {"code": "print(1)"}.'
        ) from None
    if isinstance(arguments, str) and call.name == "python":
        arguments = {"code": arguments}
    if not isinstance(arguments, dict):
        raise ToolArgumentError(f"The arguments of {call.name} must be a JSON object.")
    field = {"python": "code", "shell": "command", "final_answer": "answer"}[call.name]
    value = arguments.get(field)
    if not isinstance(value, str) or (call.name != "final_answer" and not value.strip()):
        raise ToolArgumentError(f"{call.name} needs a non-empty string argument {field!r}.")
    timeout = arguments.get("timeout")
    if timeout is not None and not isinstance(timeout, (int, float)):
        raise ToolArgumentError("shell's timeout must be a number of seconds.")
    return Action(kind=call.name, text=value, timeout=float(timeout) if timeout else None)  # type: ignore[arg-type]


def _host_arguments(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as error:
        raise ToolArgumentError(
            f"The arguments of {call.name} are not valid JSON ({error.msg} at position "
            f"{error.pos}). Send a JSON object that follows the tool's schema."
        ) from None
    if not isinstance(arguments, dict):
        raise ToolArgumentError(f"The arguments of {call.name} must be a JSON object.")
    return arguments
