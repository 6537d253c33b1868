"""The files of the machine-wide model service, under ``<models dir>/service/``.

One service per model. ``key`` is the catalog name (or ``<stem>-<hash>`` for a .gguf of
the user's own); per key:

==========================  ===============================================================
``<key>.json``              the state: who serves the model, on which port, since when
``<key>.lock``              held by a client while it starts or stops the service, and by
                            the supervisor while it stops on idle (so no lease slips in)
``<key>.alive``             locked by the supervisor for as long as it lives
``<key>.log``               the supervisor's and the server's output
``<key>.leases/*.lease``    one per session using the service, locked by its process: a
                            killed client's lock goes with it, so it leaks no reference
``<key>.requests.lock``     held around each request when the server takes one at a time
==========================  ===============================================================

Locks are ``flock`` locks: the kernel drops them when their process dies, and two open
files of one process exclude each other, so liveness needs no pid bookkeeping.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel

from kernelagent.localmodel.store import LocalModelError, models_dir
from kernelagent.machine_files import FileLock as MachineFileLock
from kernelagent.machine_files import (  # noqa: F401  (re-exported: the service's callers use them)
    LockTimeout,
    lock_is_held,
    pid_alive,
    process_command_line,
    process_rss,
    write_atomically,
)

Backend = Literal["llama-server", "llama-cpp-python"]
Status = Literal["starting", "ready", "restarting", "failed"]


class ServiceLockTimeout(LocalModelError, LockTimeout):
    """Another process held the service's lock for too long."""


def service_dir(root: Path | None = None) -> Path:
    return (root if root is not None else models_dir()) / "service"


def service_key(name: str, path: Path, in_catalog: bool) -> str:
    """The catalog name, or ``<stem>-<8 hex of the resolved path>`` for a user's file."""
    if in_catalog:
        return name
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{path.stem}-{digest}"


@dataclass(frozen=True)
class ServicePaths:
    directory: Path
    key: str

    @classmethod
    def of(cls, key: str, root: Path | None = None) -> ServicePaths:
        directory = service_dir(root)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, key)

    @property
    def state(self) -> Path:
        return self.directory / f"{self.key}.json"

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.key}.lock"

    @property
    def alive(self) -> Path:
        return self.directory / f"{self.key}.alive"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.key}.log"

    @property
    def leases(self) -> Path:
        return self.directory / f"{self.key}.leases"

    @property
    def requests_lock(self) -> Path:
        return self.directory / f"{self.key}.requests.lock"


# --- the state -----------------------------------------------------------------------


class ServiceState(BaseModel):
    """What ``<key>.json`` says; written only by the supervisor (and removed when it stops)."""

    key: str
    model: str
    """The name the server answers to (``GET /v1/models``)."""
    model_path: str
    model_size: int
    model_mtime_ns: int
    sha256: str
    backend: Backend
    host: str = "127.0.0.1"
    port: int
    pid: int | None = None
    """The server process (llama-server or llama-cpp-python's server)."""
    supervisor_pid: int
    instance: str
    """A new id per supervisor run, so a starter knows the state is its supervisor's."""
    status: Status = "starting"
    started: float
    ready_at: float | None = None
    parallel_slots: int
    """How many requests the server decodes at once (1: kernelagent sends one at a time)."""
    ctx_per_slot: int
    max_reply_tokens: int = 4096
    idle_timeout: float
    recommended_api: str = "code-blocks"
    restarts: int = 0
    error: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def serves(self, model_path: Path) -> bool:
        """True if it serves this very file (same path, size and modification time)."""
        try:
            stat = model_path.stat()
        except OSError:
            return False
        return (
            Path(self.model_path) == model_path.resolve()
            and self.model_size == stat.st_size
            and self.model_mtime_ns == stat.st_mtime_ns
        )


class SupervisorSpec(BaseModel):
    """Everything the supervisor needs (``supervisor.py``), passed as JSON on its command line."""

    root: str
    key: str
    model: str
    model_path: str
    model_size: int
    model_mtime_ns: int
    sha256: str
    backend: Backend
    binary: str | None
    parallel_slots: int
    ctx_per_slot: int
    max_reply_tokens: int = 4096
    threads: int = 0
    chat_format: str | None = None
    idle_timeout: float
    preferred_port: int | None = None
    instance: str
    recommended_api: str
    startup_timeout: float = 300.0


def read_state(paths: ServicePaths) -> ServiceState | None:
    try:
        return ServiceState.model_validate_json(paths.state.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(paths: ServicePaths, state: ServiceState) -> None:
    """Atomically (temp file + ``os.replace``): readers never see half a state."""
    write_atomically(paths.state, state.model_dump_json(indent=1))


def remove_state(paths: ServicePaths, instance: str | None = None) -> None:
    """Remove the state (only if it is still ``instance``'s, when given)."""
    if instance is not None:
        current = read_state(paths)
        if current is None or current.instance != instance:
            return
    paths.state.unlink(missing_ok=True)


def all_states(root: Path | None = None) -> list[tuple[ServicePaths, ServiceState]]:
    directory = service_dir(root)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        paths = ServicePaths(directory, path.stem)
        state = read_state(paths)
        if state is not None:
            found.append((paths, state))
    return found


# --- locks ---------------------------------------------------------------------------


class FileLock(MachineFileLock):
    """A ``flock`` on one of the service's files (see
    :class:`kernelagent.machine_files.FileLock`)."""

    timeout_error = ServiceLockTimeout


def supervisor_alive(paths: ServicePaths) -> bool:
    """True while some supervisor holds ``<key>.alive``."""
    return lock_is_held(paths.alive)


# --- leases --------------------------------------------------------------------------


class LeaseInfo(BaseModel):
    pid: int
    label: str
    host: str
    taken: float


class Lease:
    """One session's use of a service: a file this process keeps locked until release."""

    def __init__(self, paths: ServicePaths, path: Path, handle: IO[bytes], info: LeaseInfo) -> None:
        self.paths = paths
        """The files of the service this lease is on."""
        self.path = path
        self._handle: IO[bytes] | None = handle
        self.info = info

    @classmethod
    def take(cls, paths: ServicePaths, label: str) -> Lease:
        """Made under a temporary name, locked, then renamed into place, so a lease that
        others can see is always locked (by us, for as long as we live)."""
        paths.leases.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.lease"
        temp = paths.leases / f".{name}.tmp"  # not *.lease: nobody looks at it unlocked
        handle = temp.open("w+b")
        fcntl.flock(handle, fcntl.LOCK_EX)
        info = LeaseInfo(pid=os.getpid(), label=label, host=socket.gethostname(), taken=time.time())
        handle.write(info.model_dump_json().encode())
        handle.flush()
        final = paths.leases / name
        os.replace(temp, final)
        return cls(paths, final, handle, info)

    @property
    def released(self) -> bool:
        return self._handle is None

    def release(self) -> None:
        """Idempotent; the supervisor counts the service idle once no lease is left."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        self.path.unlink(missing_ok=True)
        handle.close()  # drops the lock


def live_leases(paths: ServicePaths) -> list[LeaseInfo]:
    """The leases whose process still holds them; removes those of dead processes."""
    if not paths.leases.is_dir():
        return []
    live = []
    for path in sorted(paths.leases.glob("*.lease")):
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            continue  # released meanwhile
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.append(_lease_info(handle, path))
                continue
            path.unlink(missing_ok=True)  # nobody holds it: its process is gone
    return live


def _lease_info(handle: IO[bytes], path: Path) -> LeaseInfo:
    try:
        return LeaseInfo.model_validate_json(handle.read())
    except ValueError:
        pid = int(path.name.split("-", 1)[0]) if path.name.split("-", 1)[0].isdigit() else 0
        return LeaseInfo(pid=pid, label="?", host="?", taken=path.stat().st_mtime)
