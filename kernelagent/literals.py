"""The closed sets of names kernelagent uses in its API, written once.

The CLI's and the server's checks, the pydantic models, and (through their JSON schema)
the panel's TypeScript types all take them from here.
"""

from __future__ import annotations

from typing import Literal, get_args

ApiKind = Literal["responses", "chat", "code-blocks"]
"""How the model is called: the Responses API, Chat Completions, or fenced code blocks."""

ApprovalMode = Literal["never", "shell", "always"]
"""Which actions wait for a person: none, shell commands, or every action."""

SandboxKind = Literal["docker", "local"]

SessionStatus = Literal[
    "starting",
    "running",
    "awaiting_approval",
    "paused",
    "completed",
    "failed",
    "interrupted",
]

CellStatus = Literal["ok", "error", "timeout", "kernel_died", "interrupted", "rejected"]

CellKind = Literal["python", "shell"]

ActionKind = Literal["python", "shell", "host_tool"]
"""What an approval is for: a cell, or a call to a tool that runs on the host."""

MemoryKind = Literal["fact", "finding", "dataset", "preference"]
"""What a memory is: a fact, a session's finding, a dataset card, or a preference."""

API_KINDS: tuple[ApiKind, ...] = get_args(ApiKind)
APPROVAL_MODES: tuple[ApprovalMode, ...] = get_args(ApprovalMode)
SANDBOX_KINDS: tuple[SandboxKind, ...] = get_args(SandboxKind)
