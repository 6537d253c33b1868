"""``kernelagent mcp``: serve a sandboxed, recorded kernel to MCP clients (stdio or HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from kernelagent.cli.output import console, fail, fail_with
from kernelagent.errors import KernelAgentError
from kernelagent.literals import APPROVAL_MODES, SANDBOX_KINDS

commands = typer.Typer()


@commands.command()
def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1 (default: stdio).")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --http.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token --http requires (default: $KERNELAGENT_MCP_TOKEN or a new one)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Where the token is written, mode 0600 (default: <home>/mcp/token)."),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(help="Re-attach to this session (or restore it) instead of a new one."),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", "-d", help="File to copy into each session's workspace."),
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Workspace directory (default: a new one per session).")
    ] = None,
    sandbox: Annotated[str, typer.Option(help="docker | local (local is NOT isolated)")] = "docker",
    image: Annotated[str | None, typer.Option(help="Sandbox image.")] = None,
    allow_net: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-net",
            metavar="HOST[:PORT]",
            help="A destination the sandbox may reach through the audited egress proxy.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds per cell before it is interrupted.")
    ] = 300.0,
    approve: Annotated[
        str, typer.Option(help="Which actions need a person's approval: never | shell | always")
    ] = "never",
    approve_pattern: Annotated[
        list[str] | None,
        typer.Option(help="Regex; matching code or commands need approval (repeatable)."),
    ] = None,
    approve_outside_writes: Annotated[
        bool, typer.Option(help="Writes outside the workspace need approval.")
    ] = False,
    pool: Annotated[
        bool | None,
        typer.Option("--pool/--no-pool", help="Take a warmed sandbox from the machine's pool."),
    ] = None,
) -> None:
    """Serve a sandboxed kernel to MCP clients; each connection is a recorded session."""
    if sandbox not in SANDBOX_KINDS:
        raise fail(f"unknown --sandbox {sandbox!r}: use docker or local", 2)
    if approve not in APPROVAL_MODES:
        raise fail(f"unknown --approve {approve!r}: use never, shell or always", 2)
    missing = [str(path) for path in data or [] if not path.is_file()]
    if missing:
        raise fail(f"data file not found: {', '.join(missing)} (check the --data paths)", 2)
    try:
        from kernelagent.mcp_server.server import serve_http, serve_stdio
    except ImportError as error:
        raise fail(
            f"the MCP SDK is not installed ({error.name}): pip install 'kernelagent[mcp]'"
        ) from None
    from kernelagent.agent.approvals import ApprovalPolicy
    from kernelagent.api import build_config
    from kernelagent.mcp_server.session_host import McpServerOptions

    config = build_config(sandbox=sandbox, image=image, cell_timeout=timeout)
    try:
        config.sandbox = config.sandbox.allowing(allow_net or [])
    except ValueError as error:
        raise fail(str(error), 2) from None
    if pool is not None:
        config.pool = pool
    config.approval = ApprovalPolicy(
        mode=approve,
        patterns=approve_pattern or [],
        writes_outside_workspace=approve_outside_writes,
    )
    if session is not None:
        _check_session(session)
    options = McpServerOptions(
        config=config, data=list(data or []), workspace=workspace, resume_id=session
    )
    try:
        if http:
            from kernelagent.mcp_server.http_auth import prepare_token

            secret, path = prepare_token(token, token_file)
            console.print(
                f"kernelagent MCP server: http://127.0.0.1:{port}/mcp\n"
                f"bearer token: {secret}  (also in {path}, mode 0600)",
                highlight=False,
            )
            asyncio.run(serve_http(options, port, secret))
        else:
            asyncio.run(serve_stdio(options))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except KernelAgentError as error:
        raise fail_with(error) from None


def _check_session(session_id: str) -> None:
    """Fail before serving when the session to re-attach is not there."""
    from kernelagent.session.store import SessionNotFoundError, SessionStore

    try:
        SessionStore().get(session_id)
    except SessionNotFoundError as error:
        raise fail_with(error) from None
