"""``kernelagent replay`` and ``kernelagent continue``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from kernelagent.cli import options
from kernelagent.cli.output import EXIT_CODES, EXIT_FAILED, console, fail, fail_with
from kernelagent.cli.run_command import NO_LOCAL_MODEL_HINT, local_model_choice, use_local_model
from kernelagent.errors import KernelAgentError
from kernelagent.localmodel.store import LocalModelError

if TYPE_CHECKING:
    from kernelagent.replay.replay import ReplayReport

REPLAY_FAILED = 2
"""The exit code of a replay that could not run (``kernelagent.replay.replay.EXIT_FAILED``)."""

commands = typer.Typer()

OUTCOME_STYLE = {"matched": "green", "diverged": "yellow", "error": "red", "skipped": "dim"}


@commands.command()
def replay(
    notebook: Annotated[Path, typer.Argument(help="The notebook to re-execute (never modified).")],
    sandbox: Annotated[str, typer.Option(help="docker | local")] = "docker",
    until: Annotated[
        str | None, typer.Option(help="Stop after this code cell (number or cell id).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the replayed notebook here.")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Directory with the notebook's input files.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per cell.")] = 300.0,
    side_effects: Annotated[
        str, typer.Option(help="Cells tagged kernelagent:side-effect: run | skip")
    ] = "skip",
    agent: Annotated[
        bool, typer.Option("--agent", help="Re-drive the agent loop with the recorded model turns.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Re-execute a notebook in a fresh sandbox and compare every cell's outputs.

    Exit codes: 0 all matched, 1 some cell diverged or failed, 2 the replay could not run.
    """
    kind = options.sandbox_kind(sandbox)  # exit 2, as REPLAY_FAILED
    if side_effects not in ("run", "skip"):
        raise fail("--side-effects must be run or skip", REPLAY_FAILED)
    import nbformat

    from kernelagent.replay.replay import ReplayOptions, replay_notebook
    from kernelagent.sandbox.settings import SandboxSettings

    replay_options = ReplayOptions(
        sandbox=SandboxSettings(kind=kind),
        until=until,
        workspace=workspace,
        timeout=timeout,
        side_effects=side_effects,  # type: ignore[arg-type]
    )
    try:
        with console.status(f"replaying {notebook}…"):
            if agent:
                from kernelagent.session.agent_replay import replay_agent

                report = asyncio.run(
                    replay_agent(notebook, sandbox=replay_options.sandbox, workspace=workspace)
                )
            else:
                report = asyncio.run(replay_notebook(notebook, replay_options))
    except KernelAgentError as error:  # not a notebook, a missing input, no Docker, ...
        raise fail_with(error, REPLAY_FAILED) from None
    if out is not None and report.replayed is not None:
        nbformat.write(report.replayed, out)
    if json_output:
        print(json.dumps(report.as_dict()))
    else:
        print_report(report)
    raise typer.Exit(report.exit_code)


def print_report(report: ReplayReport) -> None:
    table = Table("cell", "id", "outcome", "detail", "s", title=f"replay of {report.notebook}")
    for cell in report.cells:
        style = OUTCOME_STYLE[cell.outcome]
        table.add_row(
            str(cell.number),
            cell.cell_id[:12],
            f"[{style}]{cell.outcome}[/]",
            cell.reason,
            f"{cell.seconds:.2f}",
        )
    console.print(table)
    for cell in report.cells:
        if cell.diff:
            console.print(f"[yellow]cell {cell.number} diverged:[/]")
            console.print(Syntax(cell.diff, "diff", theme="ansi_dark"))
    counts = ", ".join(
        f"{report.count(o)} {o}" for o in ("matched", "diverged", "error", "skipped")
    )
    console.print(f"{counts} in {report.seconds:.1f}s")


@commands.command("continue")
def continue_(
    notebook: Annotated[Path, typer.Argument(help="A recorded session notebook.")],
    instruction: Annotated[str, typer.Argument(help="The new instruction.")],
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Append to NOTEBOOK itself instead of a copy.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Where to write the continued notebook.")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Directory with the notebook's workspace files.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the recorded one).")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
    api: Annotated[
        str | None,
        typer.Option(help="responses | chat | code-blocks (default: the recorded one)"),
    ] = None,
    sandbox: options.SandboxOption = "docker",
    max_steps: options.MaxSteps = 30,
    agent_memory: Annotated[
        bool | None,
        typer.Option(
            "--agent-memory/--no-agent-memory",
            help="Recall and write memories (default: as the recorded session did).",
        ),
    ] = None,
    mcp_server: options.McpServers = None,
    mcp_config: options.McpConfig = None,
    json_output: options.JsonOutput = False,
) -> None:
    """Restore a recorded session's state and conversation, then work on a new instruction."""
    from kernelagent.api import build_config
    from kernelagent.notebook.recorder import NotebookFormatError, load_notebook

    options.sandbox_kind(sandbox)
    try:
        recorded = load_notebook(notebook).metadata.get("kernelagent", {}).get("config", {})
    except NotebookFormatError as error:
        raise fail(str(error), 2) from None
    config = build_config(
        model=model or recorded.get("model"),
        api=api or recorded.get("api", "responses"),  # type: ignore[arg-type]
        base_url=base_url,
        sandbox=sandbox,
        max_steps=max_steps,
    )
    config.agent_memory = (
        agent_memory if agent_memory is not None else recorded.get("agent_memory", True)
    )
    options.set_mcp_servers(config, mcp_server or recorded.get("mcp_servers"), mcp_config)
    if mcp_config is None and recorded.get("mcp_config"):
        options.set_mcp_servers(config, config.mcp_servers, Path(recorded["mcp_config"]))
    # a model kernelagent served itself is served again, unless another one is named
    if model:
        local = local_model_choice(model, base_url)
    else:
        local = None if base_url else recorded.get("local_model")
    if local is not None:
        use_local_model(config, local, api)
        config.limits.check_answers = config.limits.verify_answers = (
            True  # as `run` does for local models
        )
    _continue(notebook, instruction, config, in_place, out, workspace, json_output)


def _continue(notebook, instruction, config, in_place, out, workspace, json_output):
    """``continue`` here, or on a node of ``$KERNELAGENT_CLUSTER`` (its events come back here)."""
    from kernelagent.api import acontinue
    from kernelagent.cli.render import EventRenderer

    try:
        result = asyncio.run(
            acontinue(
                notebook,
                instruction,
                config=config,
                in_place=in_place,
                out=out,
                workspace=workspace,
                on_event=EventRenderer(console),
                on_notice=lambda line: console.print(f"[dim]{line}[/]"),
            )
        )
    except LocalModelError as error:
        raise fail_with(error, hint=NO_LOCAL_MODEL_HINT) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the notebook was saved")
        raise typer.Exit(EXIT_CODES["interrupted"]) from None
    except KernelAgentError as error:  # the cluster, the model, the notebook, Docker, ...
        raise fail_with(error) from None
    if json_output:
        print(json.dumps(result.summary()))
    console.print(f"[dim]notebook: {result.notebook_path}[/]")
    raise typer.Exit(EXIT_CODES.get(result.status, EXIT_FAILED))
