"""What serving a model needs: the llama-cpp-python check, memory, ports, threads.

The servers themselves are started by the model service (``service``, ``supervisor``)."""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


# --- threads ---------------------------------------------------------------------------


def default_threads() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)
