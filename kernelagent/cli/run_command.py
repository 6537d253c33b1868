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

from kernelagent.cli import options
from kernelagent.cli.output import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    console,
    fail,
    fail_with,
)
from kernelagent.errors import KernelAgentError
from kernelagent.literals import API_KINDS
from kernelagent.localmodel import recommended_api
from kernelagent.localmodel.store import LocalModelError

if TYPE_CHECKING:
    from kernelagent.api import SessionResult
    from kernelagent.session.session import SessionConfig

LOCAL_ATTEMPTS = 3
"""Attempts per task on a local model: small models are right more often by a vote."""
NO_LOCAL_MODEL_HINT = "or set OPENAI_API_KEY / pass --base-url for a model server"

commands = typer.Typer()


@commands.command()
def run(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    data: options.DataFiles = None,
    workspace: options.Workspace = None,
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
    sandbox: options.SandboxOption = "docker",
    image: options.Image = None,
    allow_net: options.AllowNet = None,
    max_steps: options.MaxSteps = 30,
    timeout: options.CellTimeout = 300.0,
    max_tokens: Annotated[int | None, typer.Option(help="Token budget for the session.")] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Cost budget in USD (needs --price).")
    ] = None,
    price: Annotated[
        str | None, typer.Option(help="USD per million tokens, 'INPUT,OUTPUT'.")
    ] = None,
    approve: options.Approve = "never",
    approve_pattern: options.ApprovePatterns = None,
    approve_outside_writes: options.ApproveOutsideWrites = False,
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
    pool: options.Pool = None,
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
    mcp_server: options.McpServers = None,
    mcp_config: options.McpConfig = None,
    json_output: options.JsonOutput = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not stream cells and outputs.")
    ] = False,
) -> None:
    """Run an agent session on TASK; it is recorded as a notebook while it runs."""
    if api is not None and api not in API_KINDS:
        raise fail(f"unknown --api {api!r}: use {options.one_of(API_KINDS)}", 2)
    options.sandbox_kind(sandbox)
    options.check_data_files(data)
    price_per_million = _parse_price(price)
    options.approval_mode(approve)
    if max_cost is not None and price_per_million is None:
        raise fail("--max-cost needs --price INPUT,OUTPUT (USD per million tokens)", 2)
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
    options.set_sandbox_options(config, allow_net, pool)
    config.stream = stream
    config.decoding_slots, config.max_reply_tokens = decoding_slots, max_reply_tokens
    config.agent_memory = agent_memory
    config.limits.check_answers = check_answers if check_answers is not None else local is not None
    config.attempts = (
        attempts if attempts is not None else (LOCAL_ATTEMPTS if local is not None else 1)
    )
    config.limits.verify_answers = (
        verify if verify is not None else (config.attempts > 1 or local is not None)
    )
    options.set_approval(config, approve, approve_pattern, approve_outside_writes)
    options.set_mcp_servers(config, mcp_server, mcp_config)
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
