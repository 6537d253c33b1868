"""``kernelagent mcp``: serve a sandboxed, recorded kernel to MCP clients (stdio or HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from kernelagent.cli import options
from kernelagent.cli.output import console, fail, fail_with
from kernelagent.errors import KernelAgentError

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
    data: options.DataFiles = None,
    workspace: options.Workspace = None,
    sandbox: options.SandboxOption = "docker",
    image: options.Image = None,
    allow_net: options.AllowNet = None,
    timeout: options.CellTimeout = 300.0,
    approve: options.Approve = "never",
    approve_pattern: options.ApprovePatterns = None,
    approve_outside_writes: options.ApproveOutsideWrites = False,
    pool: options.Pool = None,
) -> None:
    """Serve a sandboxed kernel to MCP clients; each connection is a recorded session."""
    options.sandbox_kind(sandbox)
    options.approval_mode(approve)
    options.check_data_files(data)
    try:
        from kernelagent.mcp_server.server import serve_http, serve_stdio
    except ImportError as error:
        raise fail(
            f"the MCP SDK is not installed ({error.name}): pip install 'kernelagent[mcp]'"
        ) from None
    from kernelagent.api import build_config
    from kernelagent.mcp_server.session_host import McpServerOptions

    config = build_config(sandbox=sandbox, image=image, cell_timeout=timeout)
    options.set_sandbox_options(config, allow_net, pool)
    options.set_approval(config, approve, approve_pattern, approve_outside_writes)
    if session is not None:
        _check_session(session)
    server_options = McpServerOptions(
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
            asyncio.run(serve_http(server_options, port, secret))
        else:
            asyncio.run(serve_stdio(server_options))
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
