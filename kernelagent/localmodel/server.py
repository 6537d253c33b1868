"""Run ``llama_cpp.server`` (OpenAI-compatible) on 127.0.0.1 as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kernelagent.localmodel.store import LocalModelError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: Memory to load a model: MEMORY_FACTOR x the GGUF size + MEMORY_OVERHEAD. Measured peaks
#: (RSS at 8k context after a 2.5k-token prompt): 0.5B (491 MB file) 0.83 GiB,
#: 1.5B (1.12 GB file) 2.06 GiB; the fixed part is the KV cache, compute buffers and Python.
MEMORY_FACTOR = 1.5
MEMORY_OVERHEAD = 1024**3
INSTALL_HINT = "pip install 'kernelagent[local]'  (or: pip install 'llama-cpp-python[server]')"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


class LlamaCppNotInstalledError(LocalModelError):
    pass


class InsufficientMemoryError(LocalModelError):
    pass


class ServerStartError(LocalModelError):
    pass


# --- preflight checks ------------------------------------------------------------------


def ensure_llama_cpp_server_installed() -> None:
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LlamaCppNotInstalledError(
            f"the local model server needs llama-cpp-python with its server extra "
            f"(missing: {', '.join(missing)}): {INSTALL_HINT}. It builds from source in a few "
            "minutes and needs a C compiler and cmake."
        )


def read_mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in bytes, or None where /proc/meminfo does not exist (not Linux)."""
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            return int(fields[1]) * 1024  # the value is in kB
    return None


def memory_needed(model_size: int) -> int:
    return int(model_size * MEMORY_FACTOR) + MEMORY_OVERHEAD


def check_memory(model_size: int, available: int | None) -> None:
    """Refuse to load a model that would not fit in the available memory."""
    if available is None:
        return
    needed = memory_needed(model_size)
    if available < needed:
        raise InsufficientMemoryError(
            f"not enough memory to load this model: it needs about {needed / 2**30:.1f} GiB "
            f"({MEMORY_FACTOR}x its {model_size / 2**30:.2f} GiB file + "
            f"{MEMORY_OVERHEAD / 2**30:.1f} GiB for the KV cache and runtime) and only "
            f"{available / 2**30:.1f} GiB is available. Close other programs, or use a smaller "
            "model (`kernelagent model list`)."
        )


# --- ports -----------------------------------------------------------------------------


def port_is_free(port: int, host: str = DEFAULT_HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PortChoice:
    port: int
    requested: int | None

    @property
    def substituted(self) -> bool:
        return self.requested is not None and self.port != self.requested

    def notice(self) -> str | None:
        if not self.substituted:
            return None
        return f"port {self.requested} is in use; serving on port {self.port} instead"


def choose_port(
    requested: int | None,
    host: str = DEFAULT_HOST,
    is_free: Callable[[int, str], bool] = port_is_free,
) -> PortChoice:
    """``requested`` if it is free, otherwise a free port the OS picks."""
    if requested is not None and is_free(requested, host):
        return PortChoice(requested, requested)
    return PortChoice(free_port(host), requested)


# --- the server ------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover (runs in the child)
    """Linux: SIGTERM the server when the process (thread) that started it dies."""
    with contextlib.suppress(Exception):  # best effort: no libc.so.6 (musl), no prctl
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def default_threads() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


class LocalModelServer:
    """``python -m llama_cpp.server`` on 127.0.0.1; a (sync or async) context manager.

    The process is started from the calling thread (so it dies with it, on Linux) and
    stopped on exit, on ``stop()``, or when this process dies.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        model_alias: str | None = None,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        n_ctx: int = 8192,
        chat_format: str | None = None,
        n_threads: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 180.0,
        log_path: Path | None = None,
        memory_available: Callable[[], int | None] = read_mem_available,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_alias = model_alias or self.model_path.stem
        self.host = host
        self.requested_port = port
        self.n_ctx = n_ctx
        self.chat_format = chat_format
        self.n_threads = n_threads or default_threads()
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.memory_available = memory_available
        self.on_notice = on_notice or (lambda message: None)
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ServerStartError("the local model server is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_name(self) -> str:
        return self.model_alias

    def command(self, port: int) -> list[str]:
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.model_alias,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            # The server's default (True) keeps logits for every position: n_ctx x vocab
            # floats (5 GB for Qwen at 8k) and slower prompts. kernelagent needs no logprobs.
            "--logits_all", "False",
        ]
        if self.chat_format:
            command += ["--chat_format", self.chat_format]
        return command + self.extra_args

    # preflight and spawn ---------------------------------------------------------------

    def preflight(self) -> None:
        ensure_llama_cpp_server_installed()
        if not self.model_path.is_file():
            raise ServerStartError(f"model file not found: {self.model_path}")
        check_memory(self.model_path.stat().st_size, self.memory_available())

    def _spawn(self) -> None:
        choice = choose_port(self.requested_port, self.host)
        if (notice := choice.notice()) is not None:
            self.on_notice(notice)
        self.port = choice.port
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="kernelagent-llama-server-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(choice.port),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the server cleanly
                # only calls prctl (async-signal-safe enough); see _die_with_parent
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _check_alive(self) -> bool:
        """False if it exited because the port was taken (retry); raise if it died otherwise."""
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return True
        log = self.log_tail()
        self.process = None
        if "address already in use" in log.lower():
            return False
        raise ServerStartError(
            f"the llama.cpp server exited with code {code} while loading "
            f"{self.model_path.name}; last lines of {self.log_path}:\n{log}"
        )

    def _timed_out(self) -> ServerStartError:
        self.stop()
        return ServerStartError(
            f"the llama.cpp server did not answer within {self.startup_timeout:.0f}s; "
            f"see {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # sync lifecycle --------------------------------------------------------------------

    def start(self) -> LocalModelServer:
        self.preflight()
        try:
            return self._start_attempts()
        except BaseException:
            self.stop()  # never leave a half-started server behind (Ctrl-C, timeout, ...)
            raise

    def _start_attempts(self) -> LocalModelServer:
        for _attempt in range(3):
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            while self._check_alive():
                if self._ready():
                    return self
                if time.monotonic() > deadline:
                    raise self._timed_out()
                time.sleep(0.25)
            self.on_notice(f"port {self.port} was taken while the server started; retrying")
            self.requested_port = None
        raise ServerStartError(f"could not find a free port on {self.host} for the server")

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait(self) -> int:
        """Block until the server exits (for ``kernelagent model serve``)."""
        if self.process is None:
            raise ServerStartError("the local model server is not started")
        return self.process.wait()

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # async lifecycle (spawned on the loop's thread, readiness polled without blocking) -

    async def astart(self) -> LocalModelServer:
        await asyncio.to_thread(self.preflight)
        try:
            return await self._astart_attempts()
        except BaseException:
            self.stop()
            raise

    async def _astart_attempts(self) -> LocalModelServer:
        for _attempt in range(3):
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            while self._check_alive():
                if await asyncio.to_thread(self._ready):
                    return self
                if time.monotonic() > deadline:
                    raise self._timed_out()
                await asyncio.sleep(0.25)
            self.on_notice(f"port {self.port} was taken while the server started; retrying")
            self.requested_port = None
        raise ServerStartError(f"could not find a free port on {self.host} for the server")

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> LocalModelServer:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()
