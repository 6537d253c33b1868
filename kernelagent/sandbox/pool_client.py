"""The machine-wide warm pool, taker side: take a sandbox, start, list, stop pools.

Whichever process asks for a sandbox first starts the pool's supervisor (detached, see
:mod:`~kernelagent.sandbox.pool_supervisor`); every other process finds it through
``<pool dir>/<key>/state.json``. :func:`take_sandbox` claims a warmed sandbox (see
:func:`~kernelagent.sandbox.pool_files.claim`), attaches to its kernel, checks it is
alive, and moves its fresh workspace to the session's workspace path: from then on the
sandbox is the caller's alone and never goes back to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelagent.machine_files import FileLock, LockTimeout, log_tail, pid_alive, spawn_detached
from kernelagent.sandbox.docker_provisioner import DockerProvisioner
from kernelagent.sandbox.maintenance import discard_sandbox
from kernelagent.sandbox.pool_files import (
    PoolPaths,
    PoolSpec,
    PoolState,
    ReadySandbox,
    all_pools,
    claim,
    note_request,
    pool_key,
    pool_root,
    poolable,
    read_state,
    ready_records,
    supervisor_alive,
    write_sizes,
)
from kernelagent.sandbox.sandbox import Sandbox, SandboxError
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import WarmUp
from kernelagent.sandbox.workspace_access import (
    SANDBOX_UID_WHEN_HOST_IS_ROOT,
    is_protected,
    share_tree_with_sandbox_user,
)

log = logging.getLogger(__name__)

POOL_ENV = "KERNELAGENT_POOL"
"""``0``/``off``/``no``: sessions start cold unless told otherwise (``--no-pool`` per run)."""


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SandboxError(f"${name} must be a number, not {raw!r}") from None


def pool_enabled_by_default() -> bool:
    return os.environ.get(POOL_ENV, "1").strip().lower() not in ("0", "off", "no", "false")


@dataclass(frozen=True)
class PoolOptions:
    """How a pool that a taker starts is sized; each has an environment variable."""

    min_size: int = 1
    max_size: int = 4
    memory_budget_mb: int = 1024
    idle_timeout: float = 600.0

    @classmethod
    def from_env(cls) -> PoolOptions:
        return cls(
            min_size=int(_env_number("KERNELAGENT_POOL_MIN", 1)),
            max_size=int(_env_number("KERNELAGENT_POOL_MAX", 4)),
            memory_budget_mb=int(_env_number("KERNELAGENT_POOL_MEMORY_MB", 1024)),
            idle_timeout=_env_number("KERNELAGENT_POOL_IDLE_TIMEOUT", 600.0),
        )


class PooledSandbox(Sandbox):
    """A sandbox taken from the pool: shutting it down also drops the claim on it."""

    owner_lock: FileLock | None = None

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            lock, self.owner_lock = self.owner_lock, None
            if lock is not None:
                lock.path.unlink(missing_ok=True)  # its record is gone: nobody claims it again
                lock.release()


@dataclass
class Handout:
    """A sandbox the pool handed over, and what it ran before."""

    sandbox: PooledSandbox
    warm_up: WarmUp
    pool_key: str
    seconds: float
    """From the request to a live, attached kernel in the session's workspace."""


async def take_sandbox(
    settings: SandboxSettings,
    warm_up: str,
    workspace: Path,
    *,
    options: PoolOptions | None = None,
    root: Path | None = None,
) -> Handout | None:
    """A warmed sandbox whose workspace is now ``workspace`` (its files, if it has any,
    are moved in); None when the pool has none ready, or cannot serve these settings or this
    workspace path (the caller then starts one cold). When it can serve them, the pool is
    started, or told about the demand, so the next taker finds one. Called by
    ``Session.start``."""
    if poolable(settings) is not None or not _can_move_to(workspace, root):
        return None
    requested = time.perf_counter()
    paths = PoolPaths.of(pool_key(settings, warm_up), root)
    for record in ready_records(paths):
        claimed = claim(paths, record)
        if claimed is None:
            continue  # another taker's
        sandbox = await _attach(claimed[0], claimed[1], settings, workspace)
        if sandbox is None:
            continue  # its kernel died: discarded; the next one
        note_request(paths, "hit")
        if not supervisor_alive(paths):  # it was killed: start a new one to refill
            await ensure_pool(settings, warm_up, options, root=root)
        return Handout(
            sandbox,
            WarmUp.from_metadata(claimed[0].warm_up),
            paths.key,
            time.perf_counter() - requested,
        )
    note_request(paths, "miss")
    await ensure_pool(settings, warm_up, options, root=root)
    return None


def _can_move_to(workspace: Path, root: Path | None) -> bool:
    """A pooled workspace moves by ``os.rename``: the same filesystem, and a directory of
    ours (a sandbox started cold on a directory of another user would run as that user)."""
    workspace = workspace.absolute()
    ours = {os.geteuid(), SANDBOX_UID_WHEN_HOST_IS_ROOT} if os.geteuid() == 0 else {os.geteuid()}
    if workspace.exists() and (
        not workspace.is_dir()
        or workspace.is_symlink()
        or is_protected(workspace)
        or workspace.stat().st_uid not in ours
    ):
        return False
    parent = workspace.parent
    while not parent.exists():
        parent = parent.parent
    pools = root if root is not None else pool_root()
    pools.mkdir(parents=True, exist_ok=True)
    return parent.stat().st_dev == pools.stat().st_dev


async def _attach(
    ready: ReadySandbox, lock: FileLock, settings: SandboxSettings, workspace: Path
) -> PooledSandbox | None:
    state: dict[str, Any] = {**ready.sandbox_state, "settings": settings.model_dump(mode="json")}
    pooled_workspace = Path(state["workspace"])
    try:
        sandbox = await PooledSandbox.attach(state)
        assert isinstance(sandbox, PooledSandbox)  # attach makes an instance of its class
        sandbox.owner_lock = lock
        if any(pooled_workspace.iterdir()):
            raise SandboxError("its workspace is not empty")
    except (SandboxError, OSError) as error:
        log.info("discarding pooled sandbox %s: %s", ready.kernel_id, error)
        _discard_claimed(ready, lock)
        return None
    _move_workspace(sandbox, pooled_workspace, workspace.absolute())
    return sandbox


def _discard_claimed(ready: ReadySandbox, lock: FileLock) -> None:
    discard_sandbox(ready.sandbox_state)
    shutil.rmtree(ready.sandbox_state["workspace"], ignore_errors=True)
    lock.path.unlink(missing_ok=True)  # its record is gone: nobody claims it again
    lock.release()


def _move_workspace(sandbox: PooledSandbox, pooled: Path, target: Path) -> None:
    """The session's own files (if ``target`` has any) move into the pooled workspace,
    which then takes ``target``'s place; the container's bind mount follows the
    directory through the rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        original = target.stat()
        for entry in list(target.iterdir()):
            os.rename(entry, pooled / entry.name)
        target.rmdir()
        os.chmod(pooled, original.st_mode & 0o7777)
        share_tree_with_sandbox_user(pooled)
    os.rename(pooled, target)
    sandbox.workspace = target.resolve()
    provisioner = sandbox.manager.provisioner
    if isinstance(provisioner, DockerProvisioner):
        provisioner.workspace_dir = sandbox.workspace
    launch_args: dict[str, Any] = {"cwd": str(sandbox.workspace)}
    sandbox.manager._launch_args = launch_args  # so that a restart mounts it again


# --- starting and stopping pools ---------------------------------------------------------


async def ensure_pool(
    settings: SandboxSettings,
    warm_up: str,
    options: PoolOptions | None = None,
    *,
    root: Path | None = None,
    wait_ready: float = 0.0,
) -> PoolPaths:
    """Start the pool's supervisor unless one runs; with ``wait_ready``, wait up to that
    many seconds until it has ``min_size`` sandboxes ready."""
    options = options or PoolOptions.from_env()
    if (why := poolable(settings)) is not None:
        raise SandboxError(f"these sandbox settings cannot be pooled: {why}")
    paths = PoolPaths.of(pool_key(settings, warm_up), root)
    if not supervisor_alive(paths):
        lock = FileLock(paths.lock)
        try:
            await lock.acquire_async(30, "starting the sandbox pool")
        except LockTimeout as error:
            raise SandboxError(str(error)) from None
        try:
            if not supervisor_alive(paths):
                await asyncio.to_thread(_spawn, paths, settings, warm_up, options)
        finally:
            lock.release()
    if wait_ready > 0:
        await _wait_until_ready(paths, options.min_size, wait_ready)
    return paths


def _spawn(paths: PoolPaths, settings: SandboxSettings, warm_up: str, options: PoolOptions) -> None:
    paths.sizes.unlink(missing_ok=True)  # a new supervisor starts from its own sizes
    spec = PoolSpec(
        root=str(paths.directory.parent),
        key=paths.key,
        settings=settings.model_dump(mode="json"),
        warm_up=warm_up,
        min_size=options.min_size,
        max_size=max(options.min_size, options.max_size),
        memory_budget_mb=options.memory_budget_mb,
        idle_timeout=options.idle_timeout,
        instance=uuid.uuid4().hex,
    )
    code = spawn_detached(
        "kernelagent.sandbox.pool_start",
        spec.model_dump_json(),
        paths.log,
        paths.directory,
        f"starting pool {paths.key}",
    )
    if code != 0:
        raise SandboxError(
            f"the sandbox pool did not start (code {code}); see {paths.log}:\n{log_tail(paths.log)}"
        )
    deadline = time.monotonic() + 30
    while not supervisor_alive(paths):  # so the next taker does not start a second one
        if time.monotonic() > deadline:
            raise SandboxError(
                f"the sandbox pool did not come up within 30s; see {paths.log}:\n"
                f"{log_tail(paths.log)}"
            )
        time.sleep(0.02)


async def _wait_until_ready(paths: PoolPaths, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(ready_records(paths)) < count:
        state = read_state(paths)
        if state is not None and state.error and state.ready == 0 and state.starting == 0:
            raise SandboxError(
                f"the sandbox pool cannot start sandboxes: {state.error}; see {paths.log}"
            )
        if time.monotonic() > deadline:
            raise SandboxError(
                f"the pool had {len(ready_records(paths))} of {count} sandboxes ready after "
                f"{timeout:.0f}s; see {paths.log}"
            )
        await asyncio.sleep(0.1)


async def start_pool(
    settings: SandboxSettings,
    warm_up: str,
    size: int,
    *,
    max_size: int | None = None,
    root: Path | None = None,
    wait: float = 120.0,
    options: PoolOptions | None = None,
) -> PoolState:
    """``kernelagent pool start --size N``: at least ``size`` ready from now on."""
    base = options or PoolOptions.from_env()
    biggest = max(size, max_size if max_size is not None else base.max_size)
    options = PoolOptions(size, biggest, base.memory_budget_mb, base.idle_timeout)
    paths = PoolPaths.of(pool_key(settings, warm_up), root)
    write_sizes(paths, size, biggest)
    await ensure_pool(settings, warm_up, options, root=root)
    write_sizes(paths, size, biggest)  # a supervisor just started removed it; it reads it again
    await _wait_until_ready(paths, size, wait)
    state = read_state(paths)
    deadline = time.monotonic() + 5
    while state is not None and state.ready < size and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # the supervisor publishes its count every half second
        state = read_state(paths)
    if state is None:
        raise SandboxError(
            f"the sandbox pool stopped while starting; see {paths.log}:\n{log_tail(paths.log)}"
        )
    return state


def running_pools(root: Path | None = None) -> list[tuple[PoolPaths, PoolState]]:
    """The pools whose supervisor lives (``kernelagent pool status``)."""
    return [(paths, state) for paths, state in all_pools(root) if supervisor_alive(paths)]


def stop_pools(
    key: str | None = None, *, root: Path | None = None, timeout: float = 60.0
) -> list[PoolState]:
    """SIGTERM each pool's supervisor (it stops its ready sandboxes; handed-out ones stay
    with their owners) and wait until it is gone."""
    stopped = []
    for paths, state in all_pools(root):
        if key is not None and key != paths.key:
            continue
        if supervisor_alive(paths) and pid_alive(state.supervisor_pid):
            os.kill(state.supervisor_pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while supervisor_alive(paths) and time.monotonic() < deadline:
                time.sleep(0.1)
        paths.state.unlink(missing_ok=True)
        for record in ready_records(paths):  # left by a supervisor that was killed
            if (claimed := claim(paths, record)) is not None:
                _discard_claimed(*claimed)
        stopped.append(state)
    return stopped
