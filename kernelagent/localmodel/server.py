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
#: Memory to serve a model: MEMORY_FACTOR x the GGUF size + its KV cache (f16, for every
#: slot's context) + MEMORY_OVERHEAD. KV bytes per token scale with the model: Qwen2.5's
#: are 12 KiB (0.5B, 0.49 GB file) and 28 KiB (1.5B, 1.12 GB), ~26 KiB per GB of weights.
#: Measured RSS on llama-server with 4 slots of 8192 tokens: 0.5B 0.95 GiB, 1.5B 2.6 GiB.
MEMORY_FACTOR = 1.2
MEMORY_OVERHEAD = 512 * 1024**2
KV_BYTES_PER_TOKEN_PER_GB = 26 * 1024
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


def memory_needed(model_size: int, kv_tokens: int = 8192) -> int:
    """Bytes to serve a model of ``model_size`` with ``kv_tokens`` of context in all."""
    kv_cache = kv_tokens * KV_BYTES_PER_TOKEN_PER_GB * model_size / 1e9
    return int(model_size * MEMORY_FACTOR + kv_cache + MEMORY_OVERHEAD)


def check_memory(model_size: int, available: int | None, kv_tokens: int = 8192) -> None:
    """Refuse to serve a model that would not fit in the available memory."""
    if available is None:
        return
    needed = memory_needed(model_size, kv_tokens)
    if available < needed:
        raise InsufficientMemoryError(
            f"not enough memory to serve this model: it needs about {needed / 2**30:.1f} GiB "
            f"(its {model_size / 2**30:.2f} GiB file, a KV cache for {kv_tokens} tokens of "
            f"context over all slots, and the runtime) and only {available / 2**30:.1f} GiB "
            "is available. Close other programs, serve fewer slots or less context "
            "($KERNELAGENT_MODEL_SLOTS, $KERNELAGENT_MODEL_CTX), or use a smaller model "
            "(`kernelagent model list`)."
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
