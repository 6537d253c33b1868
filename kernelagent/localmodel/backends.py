"""The two servers a model can be served with, and how to pick one.

* **llama-server** (llama.cpp's own; ``kernelagent model install-server`` builds it):
  ``--parallel N`` slots with continuous batching, so N sessions decode at once.
* **llama-cpp-python's server** (``pip install 'kernelagent[local]'``), the fallback: one
  request at a time. It is started with ``--interrupt_requests False`` (by default it cuts
  a running stream short when another request arrives) and reports ``parallel_slots=1``,
  so kernelagent sends it one request at a time from every process on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kernelagent.localmodel.server import (
    INSTALL_HINT,
    LlamaCppNotInstalledError,
    default_threads,
    ensure_llama_cpp_server_installed,
)
from kernelagent.localmodel.service_files import Backend
from kernelagent.localmodel.store import LocalModelError, models_dir

LLAMA_SERVER_ENV = "KERNELAGENT_LLAMA_SERVER"
BACKEND_ENV = "KERNELAGENT_MODEL_BACKEND"
SLOTS_ENV = "KERNELAGENT_MODEL_SLOTS"
CTX_ENV = "KERNELAGENT_MODEL_CTX"
MAX_REPLY_ENV = "KERNELAGENT_MODEL_MAX_REPLY"
DEFAULT_SLOTS = 4
"""At least the default number of parallel attempts, and what 2 cores still batch well."""
ISOLATED_SLOTS = ("--cache-ram", "0", "--no-cache-idle-slots", "--no-kv-unified")
"""Each slot keeps only its own conversation's cache. llama-server's RAM prompt cache, shared
by all slots, can restore an unrelated, finished conversation into a slot serving a new
request under concurrent load, which then continues *that* conversation (llama.cpp issue
#27148; seen here: a session on sales.csv read marketing.csv, another session's file, while
benchmark sessions ran beside it). Sessions on one machine-wide server must never see each
other's data, so the cross-slot cache and the unified KV buffer are off."""
INSTALL_SERVER_HINT = (
    "run `kernelagent model install-server` (builds llama.cpp's server from the "
    "llama-cpp-python sources: ~5-8 minutes on 2 cores, needs cmake and a C++ compiler)"
)


class NoModelServerError(LocalModelError):
    """Neither llama-server nor llama-cpp-python's server is installed."""


def installed_llama_server(root: Path | None = None) -> Path | None:
    """``$KERNELAGENT_LLAMA_SERVER``, else the one ``install-server`` built into the models
    directory, else ``llama-server`` on PATH; None if there is none."""
    override = os.environ.get(LLAMA_SERVER_ENV)
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise NoModelServerError(
                f"${LLAMA_SERVER_ENV} is {override}, which is not an executable file: fix it "
                f"or unset it"
            )
        return path
    built = llama_server_install_dir(root) / "bin" / "llama-server"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    on_path = shutil.which("llama-server")
    return Path(on_path) if on_path else None


def llama_server_install_dir(root: Path | None = None) -> Path:
    return (root if root is not None else models_dir()) / "llama-server"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a model: slots, context per slot, threads (the first start decides)."""

    parallel_slots: int = DEFAULT_SLOTS
    ctx_per_slot: int = 8192
    max_reply_tokens: int = 4096
    """llama-server stops a reply there (``--n-predict``): a small model that rambles on
    must not hold a slot for minutes. Default: half the context per slot."""
    threads: int = 0
    """0: as many as this process may use."""
    chat_format: str | None = None
    """llama-cpp-python only; None uses the GGUF's template."""

    @classmethod
    def from_env(cls, n_ctx: int, slots: int | None = None, ctx: int | None = None) -> ServeOptions:
        """Explicit values, else ``$KERNELAGENT_MODEL_SLOTS`` / ``$KERNELAGENT_MODEL_CTX``,
        else 4 slots of the model's context."""
        try:
            slots = slots or int(os.environ.get(SLOTS_ENV) or DEFAULT_SLOTS)
            ctx = ctx or int(os.environ.get(CTX_ENV) or n_ctx)
            reply = int(os.environ.get(MAX_REPLY_ENV) or ctx // 2)
        except ValueError:
            raise LocalModelError(
                f"${SLOTS_ENV}, ${CTX_ENV} and ${MAX_REPLY_ENV} must be whole numbers"
            ) from None
        if slots < 1 or ctx < 256 or reply < 16:
            raise LocalModelError(
                f"serve with at least 1 slot, 256 tokens of context and replies of 16 tokens "
                f"(got {slots} slots of {ctx}, replies up to {reply})"
            )
        return cls(parallel_slots=slots, ctx_per_slot=ctx, max_reply_tokens=reply)


@dataclass(frozen=True)
class BackendChoice:
    name: Backend
    binary: Path | None
    notice: str | None = None

    def slots(self, options: ServeOptions) -> int:
        return options.parallel_slots if self.name == "llama-server" else 1


def choose_backend(preferred: str | None = None) -> BackendChoice:
    """llama-server when it is installed, else llama-cpp-python's server (with a notice),
    else an error that says how to install either. ``$KERNELAGENT_MODEL_BACKEND`` forces one."""
    preferred = preferred or os.environ.get(BACKEND_ENV) or None
    if preferred not in (None, "llama-server", "llama-cpp-python"):
        raise LocalModelError(
            f"unknown model backend {preferred!r} (${BACKEND_ENV}): use llama-server or "
            "llama-cpp-python"
        )
    if preferred != "llama-cpp-python":
        binary = installed_llama_server()
        if binary is not None:
            return BackendChoice("llama-server", binary)
        if preferred == "llama-server":
            raise NoModelServerError(f"llama-server is not installed: {INSTALL_SERVER_HINT}")
    try:
        ensure_llama_cpp_server_installed()
    except LlamaCppNotInstalledError:
        raise NoModelServerError(
            f"no local model server is installed: {INSTALL_SERVER_HINT}; or, for a server "
            f"that takes one request at a time, {INSTALL_HINT}"
        ) from None
    notice = None
    if preferred is None:
        notice = (
            "llama-server is not installed: serving with llama-cpp-python's server, one "
            "request at a time (for parallel sessions: `kernelagent model install-server`)"
        )
    return BackendChoice("llama-cpp-python", None, notice)


def server_command(
    choice: BackendChoice,
    model_path: Path,
    alias: str,
    port: int,
    options: ServeOptions,
    host: str = "127.0.0.1",
) -> list[str]:
    """The command line that serves ``model_path`` on ``host:port``."""
    threads = str(options.threads or default_threads())
    if choice.name == "llama-server":
        assert choice.binary is not None
        slots = options.parallel_slots
        return [
            str(choice.binary),
            "--model",
            str(model_path),
            "--alias",
            alias,
            "--host",
            host,
            "--port",
            str(port),
            "--parallel",
            str(slots),
            "--ctx-size",
            str(slots * options.ctx_per_slot),  # split evenly: ctx_per_slot each
            "--cont-batching",
            "--n-predict",
            str(options.max_reply_tokens),
            "--threads",
            str(threads),
            "--jinja",
            "--no-webui",
            *ISOLATED_SLOTS,
        ]
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(options.ctx_per_slot),
        "--n_threads",
        threads,
        # The default (True) keeps logits for every position: n_ctx x vocab floats
        # (5 GB for Qwen at 8k) and slower prompts. kernelagent needs no logprobs.
        "--logits_all",
        "False",
        # By default a new request cuts the running stream short (an empty reply for one
        # of the two clients); queue instead.
        "--interrupt_requests",
        "False",
    ]
    if options.chat_format:
        command += ["--chat_format", options.chat_format]
    return command


def server_ready(backend: Backend, host: str, port: int) -> bool:
    """True once the server answers: llama-server's ``/health`` is 200 after loading (503
    while it loads); llama-cpp-python's server answers ``/v1/models`` once loaded."""
    path = "/health" if backend == "llama-server" else "/v1/models"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def llama_server_version(binary: Path) -> str:
    """``llama-server --version`` (its build number and commit); raises if it cannot run."""
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as error:
        raise NoModelServerError(f"{binary} cannot run ({error}): {INSTALL_SERVER_HINT}") from None
    text = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise NoModelServerError(
            f"{binary} --version failed with code {result.returncode}: {text[-300:]}; "
            f"{INSTALL_SERVER_HINT} again (with --force)"
        )
    lines = [line for line in text.splitlines() if line.startswith("version")]
    return lines[0] if lines else text.splitlines()[0] if text else "unknown"
