"""The files of the machine-wide warm sandbox pool, under ``<pool dir>/<key>/``.

One pool per distinct sandbox-settings tuple (image, limits, security settings, labels)
and warm-up; ``key`` is a hash of them. Per pool:

========================  ===================================================================
``state.json``            the state: the supervisor, its sizes, how many are ready, memory
``lock``                  held by a process while it starts the supervisor, and by the
                          supervisor while it stops on idle (so no start slips in between)
``alive``                 locked by the supervisor for as long as it lives
``log``                   the supervisor's output
``requests.log``          one line per request (``<time> hit|miss <pid>``): the demand
``ready/<kernel>.json``   a warmed sandbox nobody owns yet (what a taker needs to attach)
``owned/<kernel>.lock``   locked by whoever claims that sandbox: a taker (then for as long
                          as it owns it) or the supervisor discarding it. The lock is the
                          claim, so one sandbox can never go to two processes
``workspaces/<kernel>/``  a pooled sandbox's own fresh workspace, moved to the session's
                          workspace path when the sandbox is handed out
========================  ===================================================================

See :mod:`kernelagent.machine_files` for the locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jupyter_core.paths import jupyter_data_dir
from pydantic import BaseModel

from kernelagent.machine_files import FileLock, lock_is_held, write_atomically
from kernelagent.sandbox.settings import SandboxSettings

POOL_DIR_ENV = "KERNELAGENT_POOL_DIR"
LABEL_POOL = "kernelagent.pool"
"""Label of every pooled container: the key of its pool."""

PoolStatus = Literal["starting", "ready", "stopping", "failed"]

_KEYED_SETTINGS = (
    "kind",
    "image",
    "mem_limit",
    "cpus",
    "pids_limit",
    "tmpfs_size",
    "network",
    "runtime",
    "labels",
)
"""What a pooled container is made with; the rest (output cap, timeouts) is the taker's."""


def pool_root() -> Path:
    """``$KERNELAGENT_POOL_DIR``, else ``$KERNELAGENT_HOME/pool``, else
    ``<jupyter data dir>/kernelagent/pool`` (next to the sessions, so a pooled workspace
    moves into a session's directory by a rename)."""
    override = os.environ.get(POOL_DIR_ENV)
    if override:
        return Path(override).expanduser()
    home = os.environ.get("KERNELAGENT_HOME")
    return (Path(home) if home else Path(jupyter_data_dir()) / "kernelagent") / "pool"


def poolable(settings: SandboxSettings) -> str | None:
    """None if sandboxes with these settings can come from the pool, else why not."""
    if settings.kind != "docker":
        return "the local sandbox is not pooled"
    if settings.network_allow:
        return (
            "a sandbox with egress (--allow-net) is not pooled: its proxy lives in the "
            "session's process"
        )
    return None


def pool_key(settings: SandboxSettings, warm_up: str) -> str:
    recipe = {name: getattr(settings, name) for name in _KEYED_SETTINGS} | {"warm_up": warm_up}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PoolPaths:
    directory: Path

    @classmethod
    def of(cls, key: str, root: Path | None = None) -> PoolPaths:
        paths = cls((root if root is not None else pool_root()) / key)
        for directory in (paths.directory, paths.ready, paths.owned, paths.workspaces):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return paths

    @property
    def key(self) -> str:
        return self.directory.name

    @property
    def state(self) -> Path:
        return self.directory / "state.json"

    @property
    def lock(self) -> Path:
        return self.directory / "lock"

    @property
    def alive(self) -> Path:
        return self.directory / "alive"

    @property
    def log(self) -> Path:
        return self.directory / "log"

    @property
    def requests(self) -> Path:
        return self.directory / "requests.log"

    @property
    def sizes(self) -> Path:
        """``{"min_size": N, "max_size": M}`` from ``kernelagent pool start --size N``."""
        return self.directory / "sizes.json"

    @property
    def ready(self) -> Path:
        return self.directory / "ready"

    @property
    def owned(self) -> Path:
        return self.directory / "owned"

    @property
    def workspaces(self) -> Path:
        return self.directory / "workspaces"

    def ready_record(self, kernel_id: str) -> Path:
        return self.ready / f"{kernel_id}.json"

    def owner_lock(self, kernel_id: str) -> Path:
        return self.owned / f"{kernel_id}.lock"

    def workspace(self, kernel_id: str) -> Path:
        return self.workspaces / kernel_id


class PoolSpec(BaseModel):
    """Everything the supervisor needs, passed as JSON on its command line."""

    root: str
    key: str
    settings: dict[str, Any]
    warm_up: str
    min_size: int = 1
    max_size: int = 4
    memory_budget_mb: int = 1024
    idle_timeout: float = 600.0
    instance: str


class PoolState(BaseModel):
    """What ``state.json`` says; written only by the supervisor (removed when it stops)."""

    key: str
    instance: str
    supervisor_pid: int
    status: PoolStatus = "starting"
    started: float
    image: str
    mem_limit: str
    cpus: float
    warm_up: str
    min_size: int
    max_size: int
    memory_budget_mb: int
    idle_timeout: float
    target: int = 0
    """How many sandboxes it keeps ready now (adapts to demand between min and max)."""
    ready: int = 0
    starting: int = 0
    memory_per_sandbox_mb: float | None = None
    """Measured on the ready sandboxes (cgroup usage minus page cache), largest of them."""
    handed_out: int = 0
    discarded_dead: int = 0
    last_request: float | None = None
    error: str = ""


class ReadySandbox(BaseModel):
    """``ready/<kernel>.json``: a warmed sandbox, as a taker attaches to it."""

    kernel_id: str
    container_id: str
    sandbox_state: dict[str, Any]
    """``Sandbox.state()``: connection info, container, runtime and workspace directories."""
    warm_up: dict[str, Any]
    """``WarmUp.as_metadata()``."""
    ready_at: float


def read_state(paths: PoolPaths) -> PoolState | None:
    try:
        return PoolState.model_validate_json(paths.state.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(paths: PoolPaths, state: PoolState) -> None:
    write_atomically(paths.state, state.model_dump_json(indent=1))


def remove_state(paths: PoolPaths, instance: str) -> None:
    current = read_state(paths)
    if current is not None and current.instance == instance:
        paths.state.unlink(missing_ok=True)


def supervisor_alive(paths: PoolPaths) -> bool:
    return lock_is_held(paths.alive)


def all_pools(root: Path | None = None) -> list[tuple[PoolPaths, PoolState]]:
    directory = root if root is not None else pool_root()
    if not directory.is_dir():
        return []
    found = []
    for state_file in sorted(directory.glob("*/state.json")):
        paths = PoolPaths(state_file.parent)
        state = read_state(paths)
        if state is not None:
            found.append((paths, state))
    return found


def write_sizes(paths: PoolPaths, min_size: int, max_size: int) -> None:
    write_atomically(paths.sizes, json.dumps({"min_size": min_size, "max_size": max_size}))


def read_sizes(paths: PoolPaths, min_size: int, max_size: int) -> tuple[int, int]:
    """The sizes asked for last (``pool start --size``), else the given ones."""
    try:
        asked = json.loads(paths.sizes.read_text())
        return int(asked["min_size"]), int(asked["max_size"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return min_size, max_size


def write_ready(paths: PoolPaths, ready: ReadySandbox) -> None:
    write_atomically(paths.ready_record(ready.kernel_id), ready.model_dump_json())


def ready_records(paths: PoolPaths) -> list[Path]:
    """Oldest first: the sandbox that waited longest is handed out first."""
    records = []
    for path in paths.ready.glob("*.json"):
        try:
            records.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue  # claimed meanwhile
    return [path for _, path in sorted(records)]


def claim(paths: PoolPaths, record: Path) -> tuple[ReadySandbox, FileLock] | None:
    """Make the sandbox of ``record`` ours: its owner lock, then its record removed.
    None when another process holds the lock or already took it. Keep the lock for as
    long as the sandbox is ours (the supervisor and ``kernelagent cleanup`` see it)."""
    if not record.exists():
        return None  # taken meanwhile (and its lock file perhaps removed by its owner)
    lock = FileLock(paths.owner_lock(record.stem))
    if not lock.try_acquire():
        return None
    try:
        ready = ReadySandbox.model_validate_json(record.read_text())
        record.unlink()
    except (FileNotFoundError, ValueError):
        lock.release()
        return None
    return ready, lock


def note_request(paths: PoolPaths, outcome: Literal["hit", "miss"]) -> None:
    """One line in ``requests.log`` (O_APPEND: concurrent writers do not interleave)."""
    line = f"{time.time():.3f} {outcome} {os.getpid()}\n".encode()
    descriptor = os.open(paths.requests, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def pooled_container_owned(
    labels: dict[str, str], kernel_id: str, root: Path | None = None
) -> str | None:
    """For ``kernelagent cleanup``: who owns a pooled container, or None if nobody does
    (its supervisor is gone and no taker holds it)."""
    key = labels.get(LABEL_POOL)
    if not key:
        return None
    paths = PoolPaths((root if root is not None else pool_root()) / key)
    if lock_is_held(paths.owner_lock(kernel_id)):
        return "taken from the pool by a live process"
    if paths.ready_record(kernel_id).exists() and supervisor_alive(paths):
        return "waiting in the warm pool"
    return None
