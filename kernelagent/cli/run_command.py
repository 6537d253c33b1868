"""``kernelagent run``: one agent session from the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kernelagent.cli.output import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    console,
    fail,
    fail_with,
)
from kernelagent.errors import KernelAgentError
from kernelagent.literals import API_KINDS, APPROVAL_MODES, SANDBOX_KINDS
from kernelagent.localmodel import recommended_api
from kernelagent.localmodel.store import LocalModelError

if TYPE_CHECKING:
    from kernelagent.api import SessionResult
    from kernelagent.session.session import SessionConfig

LOCAL_ATTEMPTS = 3
"""Attempts per task on a local model: small models are right more often by a vote."""
NO_LOCAL_MODEL_HINT = "or set OPENAI_API_KEY / pass --base-url for a model server"

commands = typer.Typer()


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}"


@commands.command()
def run(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", "-d", help="File to copy into the workspace (repeatable)."),
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Workspace directory (default: a new one per session).")
    ] = None,
    notebook: Annotated[
        Path | None, typer.Option(help="Where to record the session notebook.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name; 'local' or 'local:NAME|PATH.gguf' serves a local GGUF model (the "
            "default when no API key and no base URL are set)."
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL).")
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            help="responses | chat | code-blocks (default: responses; for local models, what suits "
            "them)"
        ),
    ] = None,
    sandbox: Annotated[str, typer.Option(help="docker | local (local is NOT isolated)")] = "docker",
    image: Annotated[str | None, typer.Option(help="Sandbox image.")] = None,
    allow_net: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-net",
            metavar="HOST[:PORT]",
            help="A destination the sandbox may reach through the host's audited egress proxy "
            "(repeatable; e.g. pypi.org, *.pythonhosted.org:443). Default: no network.",
        ),
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Model calls at most.")] = 30,
    timeout: Annotated[
        float, typer.Option(help="Seconds per cell before it is interrupted.")
    ] = 300.0,
    max_tokens: Annotated[int | None, typer.Option(help="Token budget for the session.")] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Cost budget in USD (needs --price).")
    ] = None,
    price: Annotated[
        str | None, typer.Option(help="USD per million tokens, 'INPUT,OUTPUT'.")
    ] = None,
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
    check_answers: Annotated[
        bool | None,
        typer.Option(
            "--check-answers/--no-check-answers",
            help="Send a short answer back once when no cell printed it (default: on for local "
            "models).",
        ),
    ] = None,
    attempts: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=8,
            help="Independent attempts, each in its own sandbox; the answer most of them agree on "
            "wins (default: 3 for local models, else 1).",
        ),
    ] = None,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="Show the model its answer's code and output once to confirm or fix it (default: "
            "on for local models or --attempts > 1).",
        ),
    ] = None,
    pool: Annotated[
        bool | None,
        typer.Option(
            "--pool/--no-pool",
            help="Take a warmed sandbox from the machine's pool (default; numpy, pandas, "
            "matplotlib already imported). --no-pool starts one cold, without the warm-up.",
        ),
    ] = None,
    decoding_slots: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The --base-url server is llama.cpp's llama-server with N parallel slots: each "
            "attempt keeps one, so its prompt stays cached (set by itself for the local model).",
        ),
    ] = None,
    max_reply_tokens: Annotated[
        int | None,
        typer.Option(
            min=16, help="Longest reply the model may write (default: 1024 for the local model)."
        ),
    ] = None,
    agent_memory: Annotated[
        bool,
        typer.Option(
            "--agent-memory/--no-agent-memory",
            help="Recall what earlier sessions learned and remember what this one learns "
            "(default). Not the sandbox's memory limit.",
        ),
    ] = True,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream/--no-stream",
            help="Stream model replies. Some servers (llama.cpp's) report token usage only with "
            "--no-stream.",
        ),
    ] = True,
    mcp_server: Annotated[
        list[str] | None,
        typer.Option(
            "--mcp-server",
            metavar="[NAME=]CMD|URL",
            help="An MCP server whose tools the agent gets, run on the host (repeatable).",
        ),
    ] = None,
    mcp_config: Annotated[
        Path | None,
        typer.Option(help='MCP servers in the common {"mcpServers": {...}} JSON format.'),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not stream cells and outputs.")
    ] = False,
) -> None:
    """Run an agent session on TASK; it is recorded as a notebook while it runs."""
    if api is not None and api not in API_KINDS:
        raise fail(f"unknown --api {api!r}: use {_one_of(API_KINDS)}", 2)
    if sandbox not in SANDBOX_KINDS:
        raise fail(f"unknown --sandbox {sandbox!r}: use {_one_of(SANDBOX_KINDS)}", 2)
    missing = [str(path) for path in data or [] if not path.is_file()]
    if missing:
        raise fail(f"data file not found: {', '.join(missing)} (check the --data paths)", 2)
    price_per_million = _parse_price(price)
    if approve not in APPROVAL_MODES:
        raise fail(f"unknown --approve {approve!r}: use {_one_of(APPROVAL_MODES)}", 2)
    if max_cost is not None and price_per_million is None:
        raise fail("--max-cost needs --price INPUT,OUTPUT (USD per million tokens)", 2)
    from kernelagent.agent.approvals import ApprovalPolicy
    from kernelagent.api import build_config
    from kernelagent.cli.render import EventRenderer

    local = local_model_choice(model, base_url)
    if local is not None and model is None:
        console.print(
            f"[dim]no API key or base URL configured: using the local model {local or 'default'} "
            f"(offline)[/]"
        )
    config = build_config(
        model=model,
        api=api or "responses",
        base_url=base_url,
        sandbox=sandbox,
        image=image,
        max_steps=max_steps,
        cell_timeout=timeout,
        max_tokens=max_tokens,
        max_cost=max_cost,
        price_per_million=price_per_million,
    )
    try:
        config.sandbox = config.sandbox.allowing(allow_net or [])
    except ValueError as error:
        raise fail(str(error), 2) from None
    config.stream = stream
    config.decoding_slots, config.max_reply_tokens = decoding_slots, max_reply_tokens
    config.agent_memory = agent_memory
    if pool is not None:
        config.pool = pool
    config.limits.check_answers = check_answers if check_answers is not None else local is not None
    config.attempts = (
        attempts if attempts is not None else (LOCAL_ATTEMPTS if local is not None else 1)
    )
    config.limits.verify_answers = (
        verify if verify is not None else (config.attempts > 1 or local is not None)
    )
    config.approval = ApprovalPolicy(
        mode=approve,
        patterns=approve_pattern or [],
        writes_outside_workspace=approve_outside_writes,
    )
    set_mcp_servers(config, mcp_server, mcp_config)
    renderer = None if quiet else EventRenderer(console)
    try:
        result = asyncio.run(
            _run(task, data or [], workspace, notebook, config, renderer, local, api)
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the notebook was saved")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except LocalModelError as error:
        raise fail_with(error, hint=NO_LOCAL_MODEL_HINT) from None
    except KernelAgentError as error:  # the model, Docker, the sandbox, the notebook
        raise fail_with(error) from None
    except FileNotFoundError as error:
        raise fail(str(error)) from None
    if json_output:
        print(json.dumps(result.summary()), file=sys.stdout)
    elif quiet:
        console.print(
            result.answer if result.answer is not None else f"{result.status}: {result.reason}"
        )
    if result.status == "awaiting_approval":
        console.print(
            f"[bold yellow]waiting for approval[/]: kernelagent show {result.session_id}, "
            f"then approve {result.session_id} or reject {result.session_id}"
        )
    console.print(f"[dim]notebook: {result.notebook_path}[/]")
    raise typer.Exit(EXIT_CODES.get(result.status, EXIT_FAILED))


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


def local_model_choice(model: str | None, base_url: str | None) -> str | None:
    """The local model to serve ('' for the default), or None to use an API."""
    if model is not None:
        if model == "local":
            return ""
        return model.removeprefix("local:") if model.startswith("local:") else None
    if base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        return None
    return ""


def use_local_model(config: SessionConfig, local: str, api: str | None) -> None:
    """Point ``config`` at a model kernelagent serves itself ('' for the default)."""
    config.local_model = local
    config.api = api or recommended_api(local or None)  # type: ignore[assignment]
    if config.limits.temperature is None:
        config.limits.temperature = 0.0  # the first attempt is the model's most likely reply


async def _run(task, data, workspace, notebook, config, renderer, local, api) -> SessionResult:
    from kernelagent.api import served_model

    if local is None:
        return await _run_session(task, data, workspace, notebook, config, renderer)
    use_local_model(config, local, api)
    async with AsyncExitStack() as stack:
        with console.status("starting the local model server (first use: pulls the model)…"):
            notice = lambda line: console.print(f"[dim]{line}[/]")  # noqa: E731
            await stack.enter_async_context(served_model(config, on_notice=notice))
        return await _run_session(task, data, workspace, notebook, config, renderer)


async def _run_session(task, data, workspace, notebook, config, renderer) -> SessionResult:
    from kernelagent.api import arun

    with console.status("starting the sandbox…", spinner="dots") as status:
        started = asyncio.Event()

        def on_event(event) -> None:
            if not started.is_set():
                started.set()
                status.stop()
            if renderer is not None:
                renderer(event)

        return await arun(
            task,
            data=data,
            workspace=workspace,
            notebook=notebook,
            config=config,
            on_event=on_event,
        )


def _parse_price(price: str | None) -> tuple[float, float] | None:
    if price is None:
        return None
    try:
        price_in, price_out = (float(part) for part in price.split(","))
    except ValueError:
        raise fail(
            "--price must be 'INPUT,OUTPUT' in USD per million tokens, e.g. 0.4,1.6", 2
        ) from None
    return price_in, price_out
