"""Options more than one command takes (``run``, ``continue``, ``mcp``), declared once, and
the checks that turn them into a session config (bad values exit 2 with what to write)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kernelagent.cli.output import fail, fail_with
from kernelagent.literals import APPROVAL_MODES, SANDBOX_KINDS, ApprovalMode, SandboxKind

if TYPE_CHECKING:
    from kernelagent.session.session import SessionConfig

DataFiles = Annotated[
    list[Path] | None,
    typer.Option("--data", "-d", help="File to copy into the workspace (repeatable)."),
]
Workspace = Annotated[
    Path | None, typer.Option(help="Workspace directory (default: a new one per session).")
]
SandboxOption = Annotated[str, typer.Option(help="docker | local (local is NOT isolated)")]
Image = Annotated[str | None, typer.Option(help="Sandbox image.")]
AllowNet = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-net",
        metavar="HOST[:PORT]",
        help="A destination the sandbox may reach through the host's audited egress proxy "
        "(repeatable; e.g. pypi.org, *.pythonhosted.org:443). Default: no network.",
    ),
]
CellTimeout = Annotated[float, typer.Option(help="Seconds per cell before it is interrupted.")]
MaxSteps = Annotated[int, typer.Option(help="Model calls at most.")]
Approve = Annotated[
    str, typer.Option(help="Which actions need a person's approval: never | shell | always")
]
ApprovePatterns = Annotated[
    list[str] | None,
    typer.Option(help="Regex; matching code or commands need approval (repeatable)."),
]
ApproveOutsideWrites = Annotated[
    bool, typer.Option(help="Writes outside the workspace need approval.")
]
Pool = Annotated[
    bool | None,
    typer.Option(
        "--pool/--no-pool",
        help="Take a warmed sandbox from the machine's pool (default; numpy, pandas, "
        "matplotlib already imported). --no-pool starts one cold, without the warm-up.",
    ),
]
McpServers = Annotated[
    list[str] | None,
    typer.Option(
        "--mcp-server",
        metavar="[NAME=]CMD|URL",
        help="An MCP server whose tools the agent gets, run on the host (repeatable).",
    ),
]
McpConfig = Annotated[
    Path | None,
    typer.Option(help='MCP servers in the common {"mcpServers": {...}} JSON format.'),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]


def one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}"


def sandbox_kind(sandbox: str) -> SandboxKind:
    for kind in SANDBOX_KINDS:
        if sandbox == kind:
            return kind
    raise fail(f"unknown --sandbox {sandbox!r}: use {one_of(SANDBOX_KINDS)}", 2)


def check_data_files(data: list[Path] | None) -> None:
    missing = [str(path) for path in data or [] if not path.is_file()]
    if missing:
        raise fail(f"data file not found: {', '.join(missing)} (check the --data paths)", 2)


def approval_mode(approve: str) -> ApprovalMode:
    for mode in APPROVAL_MODES:
        if approve == mode:
            return mode
    raise fail(f"unknown --approve {approve!r}: use {one_of(APPROVAL_MODES)}", 2)


def set_sandbox_options(
    config: SessionConfig, allow_net: list[str] | None, pool: bool | None
) -> None:
    """``--allow-net`` and ``--pool`` into the session config (a bad destination exits 2)."""
    try:
        config.sandbox = config.sandbox.allowing(allow_net or [])
    except ValueError as error:
        raise fail(str(error), 2) from None
    if pool is not None:
        config.pool = pool


def set_approval(
    config: SessionConfig, approve: str, patterns: list[str] | None, outside_writes: bool
) -> None:
    from kernelagent.agent.approvals import ApprovalPolicy

    config.approval = ApprovalPolicy(
        mode=approval_mode(approve),
        patterns=patterns or [],
        writes_outside_workspace=outside_writes,
    )


def set_mcp_servers(
    config: SessionConfig, servers: list[str] | None, config_file: Path | None
) -> None:
    """``--mcp-server`` / ``--mcp-config`` into the session config, checked now (exit 2)."""
    from kernelagent.session.mcp_servers import McpConfigError, configured_servers

    config.mcp_servers = list(servers or [])
    config.mcp_config = str(config_file.resolve()) if config_file else None
    try:
        configured_servers(config.mcp_servers, config.mcp_config)
    except McpConfigError as error:
        raise fail_with(error, 2) from None
