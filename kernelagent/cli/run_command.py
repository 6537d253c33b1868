"""``kernelagent run``: one agent session from the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer

from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.agent.model import ModelError
from kernelagent.api import SessionResult, arun, build_config, served_model
from kernelagent.cli.app import app, console, fail
from kernelagent.cli.render import EventRenderer
from kernelagent.localmodel import recommended_api
from kernelagent.localmodel.store import LocalModelError
from kernelagent.notebook.recorder import RecordingError
from kernelagent.sandbox.docker_provisioner import DockerUnavailableError
from kernelagent.sandbox.sandbox import SandboxError
from kernelagent.session.session import SessionConfig

#: Exit codes, documented in the README.
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_PAUSED = 3
EXIT_AWAITING_APPROVAL = 4
EXIT_INTERRUPTED = 130

LOCAL_ATTEMPTS = 3
"""Attempts per task on a local model: small models are right more often by a vote."""

EXIT_CODES = {
    "completed": EXIT_COMPLETED,
    "failed": EXIT_FAILED,
    "paused": EXIT_PAUSED,
    "awaiting_approval": EXIT_AWAITING_APPROVAL,
    "interrupted": EXIT_INTERRUPTED,
}


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="File to copy into the workspace (repeatable).")] = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Workspace directory (default: a new one per session).")] = None,
    notebook: Annotated[Optional[Path], typer.Option(help="Where to record the session notebook.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name; 'local' or 'local:NAME|PATH.gguf' serves a local GGUF model (the default when no API key and no base URL are set).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL).")] = None,
    api: Annotated[Optional[str], typer.Option(help="responses | chat | code-blocks (default: responses; for local models, what suits them)")] = None,
    sandbox: Annotated[str, typer.Option(help="docker | local (local is NOT isolated)")] = "docker",
    image: Annotated[Optional[str], typer.Option(help="Sandbox image.")] = None,
    allow_net: Annotated[Optional[list[str]], typer.Option("--allow-net", metavar="HOST[:PORT]", help="A destination the sandbox may reach through the host's audited egress proxy (repeatable; e.g. pypi.org, *.pythonhosted.org:443). Default: no network.")] = None,
    max_steps: Annotated[int, typer.Option(help="Model calls at most.")] = 30,
    timeout: Annotated[float, typer.Option(help="Seconds per cell before it is interrupted.")] = 300.0,
    max_tokens: Annotated[Optional[int], typer.Option(help="Token budget for the session.")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Cost budget in USD (needs --price).")] = None,
    price: Annotated[Optional[str], typer.Option(help="USD per million tokens, 'INPUT,OUTPUT'.")] = None,
    approve: Annotated[str, typer.Option(help="Which actions need a person's approval: never | shell | always")] = "never",
    approve_pattern: Annotated[Optional[list[str]], typer.Option(help="Regex; matching code or commands need approval (repeatable).")] = None,
    approve_outside_writes: Annotated[bool, typer.Option(help="Writes outside the workspace need approval.")] = False,
    check_answers: Annotated[Optional[bool], typer.Option("--check-answers/--no-check-answers", help="Send a short answer back once when no cell printed it (default: on for local models).")] = None,
    attempts: Annotated[Optional[int], typer.Option(min=1, max=8, help="Independent attempts, each in its own sandbox; the answer most of them agree on wins (default: 3 for local models, else 1).")] = None,
    verify: Annotated[Optional[bool], typer.Option("--verify/--no-verify", help="Show the model its answer's code and output once to confirm or fix it (default: on for local models or --attempts > 1).")] = None,
    pool: Annotated[Optional[bool], typer.Option("--pool/--no-pool", help="Take a warmed sandbox from the machine's pool (default; numpy, pandas, matplotlib already imported). --no-pool starts one cold, without the warm-up.")] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Stream model replies. Some servers (llama.cpp's) report token usage only with --no-stream.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream cells and outputs.")] = False,
) -> None:
    """Run an agent session on TASK; it is recorded as a notebook while it runs."""
    if api not in (None, "responses", "chat", "code-blocks"):
        raise fail(f"unknown --api {api!r}: use responses, chat or code-blocks", 2)
    if sandbox not in ("docker", "local"):
        raise fail(f"unknown --sandbox {sandbox!r}: use docker or local", 2)
    missing = [str(path) for path in data or [] if not path.is_file()]
    if missing:
        raise fail(f"data file not found: {', '.join(missing)} (check the --data paths)", 2)
    price_per_million = _parse_price(price)
    if approve not in ("never", "shell", "always"):
        raise fail(f"unknown --approve {approve!r}: use never, shell or always", 2)
    if max_cost is not None and price_per_million is None:
        raise fail("--max-cost needs --price INPUT,OUTPUT (USD per million tokens)", 2)
    local = local_model_choice(model, base_url)
    if local is not None and model is None:
        console.print(f"[dim]no API key or base URL configured: using the local model {local or 'default'} (offline)[/]")
    config = build_config(
        model=model, api=api or "responses", base_url=base_url, sandbox=sandbox, image=image,  # type: ignore[arg-type]
        max_steps=max_steps, cell_timeout=timeout, max_tokens=max_tokens, max_cost=max_cost,
        price_per_million=price_per_million,
    )
    try:
        config.sandbox = config.sandbox.allowing(allow_net or [])
    except ValueError as error:
        raise fail(str(error), 2) from None
    config.stream = stream
    if pool is not None:
        config.pool = pool
    config.limits.check_answers = check_answers if check_answers is not None else local is not None
    config.attempts = attempts if attempts is not None else (LOCAL_ATTEMPTS if local is not None else 1)
    config.limits.verify_answers = verify if verify is not None else (config.attempts > 1 or local is not None)
    config.approval = ApprovalPolicy(
        mode=approve, patterns=approve_pattern or [], writes_outside_workspace=approve_outside_writes  # type: ignore[arg-type]
    )
    renderer = None if quiet else EventRenderer(console)
    try:
        result = asyncio.run(_run(task, data or [], workspace, notebook, config, renderer, local, api))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the notebook was saved")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except ModelError as error:
        raise fail(f"{error.message}" + (f"\n  hint: {error.hint}" if error.hint else "")) from None
    except LocalModelError as error:
        raise fail(f"{error}\n  hint: or set OPENAI_API_KEY / pass --base-url for a model server") from None
    except (DockerUnavailableError, SandboxError, RecordingError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    if json_output:
        print(json.dumps(result.summary()), file=sys.stdout)
    elif quiet:
        console.print(result.answer if result.answer is not None else f"{result.status}: {result.reason}")
    if result.status == "awaiting_approval":
        console.print(f"[bold yellow]waiting for approval[/]: kernelagent show {result.session_id}, "
                      f"then approve {result.session_id} or reject {result.session_id}")
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


async def _run(task, data, workspace, notebook, config, renderer, local, api) -> SessionResult:  # type: ignore[no-untyped-def]
    if local is None:
        return await _run_session(task, data, workspace, notebook, config, renderer)
    use_local_model(config, local, api)
    async with AsyncExitStack() as stack:
        with console.status("starting the local model server (first use: pulls the model)…"):
            notice = lambda line: console.print(f"[dim]{line}[/]")  # noqa: E731
            await stack.enter_async_context(served_model(config, on_notice=notice))
        return await _run_session(task, data, workspace, notebook, config, renderer)


async def _run_session(task, data, workspace, notebook, config, renderer) -> SessionResult:  # type: ignore[no-untyped-def]
    with console.status("starting the sandbox…", spinner="dots") as status:
        started = asyncio.Event()

        def on_event(event) -> None:  # type: ignore[no-untyped-def]
            if not started.is_set():
                started.set()
                status.stop()
            if renderer is not None:
                renderer(event)

        return await arun(task, data=data, workspace=workspace, notebook=notebook, config=config, on_event=on_event)


def _parse_price(price: str | None) -> tuple[float, float] | None:
    if price is None:
        return None
    try:
        price_in, price_out = (float(part) for part in price.split(","))
    except ValueError:
        raise fail("--price must be 'INPUT,OUTPUT' in USD per million tokens, e.g. 0.4,1.6", 2) from None
    return price_in, price_out
