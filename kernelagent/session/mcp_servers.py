"""Which MCP servers a session's agent gets tools from: ``--mcp-server NAME=CMD|URL``
(repeatable) and ``--mcp-config FILE`` in the common ``mcpServers`` JSON format
(Claude Desktop's, Cursor's)::

    {"mcpServers": {
        "prices": {"command": "python3", "args": ["prices.py"], "env": {"KEY": "..."}},
        "docs": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ..."}}
    }}

The session stores the options as given (the strings, and the config file's path), not the
file's contents, so the secrets a config holds (env, headers) stay out of the notebook and
the session index; resuming reads the file again.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from kernelagent.errors import KernelAgentError


class McpConfigError(KernelAgentError, ValueError):
    """An MCP server option or config file kernelagent cannot use."""


class McpServerSpec(BaseModel):
    name: str
    transport: Literal["stdio", "http", "sse"] = "stdio"
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)

    def describe(self) -> str:
        return self.url if self.transport != "stdio" else shlex.join([self.command, *self.args])


def parse_option(value: str, index: int = 1) -> McpServerSpec:
    """``NAME=CMD`` / ``NAME=URL`` / ``CMD`` / ``URL`` (a command line is split like a shell's)."""
    name, _, rest = value.partition("=")
    if not rest or not name.isidentifier():
        name, rest = "", value
    rest = rest.strip()
    if not rest:
        raise McpConfigError(
            f"--mcp-server {value!r} names no server",
            "give a command (--mcp-server 'python3 server.py') or a URL (http://127.0.0.1:9000/mcp)",
        )
    if rest.startswith(("http://", "https://")):
        return McpServerSpec(name=name or f"mcp{index}", transport="http", url=rest)
    try:
        argv = shlex.split(rest)
    except ValueError as error:
        raise McpConfigError(f"--mcp-server {value!r}: {error}") from None
    return McpServerSpec(name=name or _name_from(argv, index), command=argv[0], args=argv[1:])


def _name_from(argv: list[str], index: int) -> str:
    runners = {"python", "python3", "node", "npx", "uvx", "uv", "bunx", "deno", "run", "-m", "-y"}
    for word in argv:
        stem = Path(word).stem.replace("-", "_").replace(".", "_")
        if word not in runners and not word.startswith("-") and stem.isidentifier():
            return stem
    return f"mcp{index}"


def load_config_file(path: str | Path) -> list[McpServerSpec]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise McpConfigError(
            f"cannot read the MCP config {path}: {error.strerror}", "check --mcp-config"
        ) from None
    except json.JSONDecodeError as error:
        raise McpConfigError(f"the MCP config {path} is not valid JSON: {error}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(
            f'the MCP config {path} has no "mcpServers" object',
            'write {"mcpServers": {"name": {"command": "...", "args": [...]}}}',
        )
    specs = []
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise McpConfigError(f"{path}: mcpServers.{name} is not an object")
        kind = str(entry.get("type") or entry.get("transport") or "")
        transport: Literal["stdio", "http", "sse"] = (
            "sse" if kind == "sse" else "http" if entry.get("url") else "stdio"
        )
        fields = {k: v for k, v in entry.items() if k in McpServerSpec.model_fields}
        fields |= {"name": name, "transport": transport}
        try:
            spec = McpServerSpec.model_validate(fields)
        except ValidationError as error:
            raise McpConfigError(f"{path}: mcpServers.{name}: {error.errors()[0]['msg']}") from None
        if not spec.url and not spec.command:
            raise McpConfigError(f"{path}: mcpServers.{name} has neither a command nor a url")
        specs.append(spec)
    return specs


def configured_servers(options: list[str], config_file: str | None) -> list[McpServerSpec]:
    """Every server a session names, in order; names must not repeat."""
    specs = [parse_option(value, index) for index, value in enumerate(options, 1)]
    if config_file:
        specs += load_config_file(config_file)
    names = [spec.name for spec in specs]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise McpConfigError(
            f"two MCP servers are named {', '.join(repeated)}",
            "name them: --mcp-server NAME=CMD",
        )
    return specs
