"""The light commands start without the heavy stacks: what a command needs beyond typer
and rich it imports when it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "nbformat",
    "nbclient",
    "openai",
    "jupyter_server",
    "tornado",
    "docker",
    "kernelagent.notebook",
    "kernelagent.agent.loop",
    "kernelagent.api",
    "kernelagent.server",
    "kernelagent.sandbox.sandbox",
    "mcp",
    "kernelagent.mcp_server.server",
    "opentelemetry",
    "psycopg",
    "ray",
)

PROBE = """
import json, sys
from kernelagent.cli.app import app
try:
    app(sys.argv[2:], prog_name="kernelagent")
except SystemExit:
    pass
with open(sys.argv[1], "w") as file:
    json.dump(sorted(sys.modules), file)
"""


def modules_after(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded once ``kernelagent ARGS`` has run, in a fresh interpreter."""
    report = tmp_path / "modules.json"
    env = {**os.environ, "KERNELAGENT_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert report.is_file(), done.stderr
    return set(json.loads(report.read_text()))


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--help",),
        ("sessions", "--json"),
        ("show", "nosuchsession"),
        ("approve", "--help"),
        ("run", "--help"),
        ("model", "list"),
        ("mcp", "--help"),
    ],
    ids=lambda args: " ".join(args) or "import",
)
def test_a_light_command_loads_no_heavy_stack(tmp_path: Path, args: tuple[str, ...]) -> None:
    loaded = modules_after(tmp_path, *args)
    assert "kernelagent.cli.app" in loaded
    assert not [name for name in HEAVY if name in loaded]


def test_a_command_that_runs_a_session_loads_the_stack_it_needs(tmp_path: Path) -> None:
    notebook = tmp_path / "not-a-notebook.ipynb"
    notebook.write_text("{}")
    loaded = modules_after(tmp_path, "continue", str(notebook), "more", "--sandbox", "local")
    assert {"kernelagent.api", "kernelagent.notebook.recorder"} <= loaded
