"""The machine-wide model service, client side: acquire a lease, list, stop.

One server per local model on the machine, whichever process needs it first starts it
(a detached :mod:`~kernelagent.localmodel.supervisor`); every other process finds it
through ``<models dir>/service/<key>.json`` and takes a lease. The supervisor stops the
server once no lease is left for ``idle_timeout`` seconds. See
:mod:`~kernelagent.localmodel.service_files` for the files and locks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernelagent.localmodel.backends import BackendChoice, ServeOptions
from kernelagent.localmodel.server import ServerStartError, check_memory, read_mem_available
from kernelagent.localmodel.service_files import (
    FileLock,
    Lease,
    LeaseInfo,
    ServicePaths,
    ServiceState,
    SupervisorSpec,
    all_states,
    live_leases,
    pid_alive,
    process_command_line,
    process_rss,
    read_state,
    remove_state,
    service_key,
    supervisor_alive,
)
from kernelagent.localmodel.store import LocalModelError, ResolvedModel, sha256_file
from kernelagent.machine_files import log_tail as machine_log_tail
from kernelagent.machine_files import spawn_detached

IDLE_TIMEOUT_ENV = "KERNELAGENT_MODEL_IDLE_TIMEOUT"
DEFAULT_IDLE_TIMEOUT = 300.0
"""Seconds the server stays up after its last session, so the next one starts warm."""
STARTUP_TIMEOUT = 300.0

Notice = Callable[[str], None]


def idle_timeout_from_env() -> float:
    raw = os.environ.get(IDLE_TIMEOUT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_IDLE_TIMEOUT
    except ValueError:
        raise LocalModelError(
            f"${IDLE_TIMEOUT_ENV} must be a number of seconds, not {raw!r}"
        ) from None
    return max(0.0, value)


def default_label() -> str:
    """What `model ps` shows for a lease: the program and its subcommand."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "-c", "python", "python3"):
        program = "python"
    rest = [arg for arg in sys.argv[1:2] if not arg.startswith("-")]
    return " ".join([program, *rest])


def paths_for(resolved: ResolvedModel, root: Path | None = None) -> ServicePaths:
    return ServicePaths.of(
        service_key(resolved.name, resolved.path, resolved.catalog is not None), root
    )


# --- acquiring ------------------------------------------------------------------------


async def acquire(
    resolved: ResolvedModel,
    choose: Callable[[], BackendChoice],
    options: ServeOptions,
    *,
    label: str | None = None,
    port: int | None = None,
    idle_timeout: float | None = None,
    on_notice: Notice | None = None,
    root: Path | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> tuple[ServiceState, Lease]:
    """A lease on the service of ``resolved`` (a pulled model), starting it if no live one
    serves this very file. Called by ``start_local_model``; release the lease when done.
    ``choose`` picks the backend, only when a server has to be started."""
    notice = on_notice or (lambda message: None)
    paths = paths_for(resolved, root)
    label = label or default_label()
    lock = FileLock(paths.lock)
    await lock.acquire_async(
        startup_timeout + 60,
        f"starting or stopping the {resolved.name} server",
        on_wait=lambda: notice(f"waiting for another process that is starting {resolved.name}"),
    )
    try:
        state = read_state(paths)
        if state is not None and supervisor_alive(paths):
            if state.serves(resolved.path) and state.status in ("starting", "ready", "restarting"):
                lease = Lease.take(paths, label)
                try:
                    return await _wait_until_ready(paths, state.instance, startup_timeout), lease
                except BaseException:
                    lease.release()
                    raise
            why = (
                "failed"
                if state.serves(resolved.path)
                else f"serves another file ({state.model_path})"
            )
            notice(f"the {resolved.name} server {why}: starting a new one")
            await asyncio.to_thread(stop_service, paths, state)
        elif state is not None:
            clean_up_dead_service(paths, state)
        choice = choose()
        if choice.notice:
            notice(choice.notice)
        slots = choice.slots(options)
        check_memory(
            resolved.path.stat().st_size, read_mem_available(), slots * options.ctx_per_slot
        )
        lease = Lease.take(paths, label)  # before the supervisor first counts its users
        try:
            preferred = port or (state.port if state is not None else None)
            started = await _start_supervisor(
                paths, resolved, choice, options, idle_timeout, preferred, startup_timeout
            )
        except BaseException:
            lease.release()
            raise
        return started, lease
    finally:
        lock.release()


async def _start_supervisor(
    paths: ServicePaths,
    resolved: ResolvedModel,
    choice: BackendChoice,
    options: ServeOptions,
    idle_timeout: float | None,
    preferred_port: int | None,
    startup_timeout: float,
) -> ServiceState:
    stat = resolved.path.stat()
    sha256 = (
        resolved.catalog.sha256
        if resolved.catalog is not None
        else await asyncio.to_thread(sha256_file, resolved.path)
    )
    spec = SupervisorSpec(
        root=str(paths.directory.parent),
        key=paths.key,
        model=resolved.name,
        model_path=str(resolved.path.resolve()),
        model_size=stat.st_size,
        model_mtime_ns=stat.st_mtime_ns,
        sha256=sha256,
        backend=choice.name,
        binary=str(choice.binary) if choice.binary else None,
        parallel_slots=options.parallel_slots,
        ctx_per_slot=options.ctx_per_slot,
        max_reply_tokens=options.max_reply_tokens,
        threads=options.threads,
        chat_format=options.chat_format or resolved.chat_format,
        idle_timeout=idle_timeout if idle_timeout is not None else idle_timeout_from_env(),
        preferred_port=preferred_port,
        instance=uuid.uuid4().hex,
        recommended_api=resolved.api,
        startup_timeout=startup_timeout,
    )
    code = await asyncio.to_thread(_spawn_supervisor, paths, spec)
    if code != 0:
        raise ServerStartError(
            f"the model service did not start (code {code}); see {paths.log}:\n{log_tail(paths)}"
        )
    return await _wait_until_ready(paths, spec.instance, startup_timeout)


def _spawn_supervisor(paths: ServicePaths, spec: SupervisorSpec) -> int:
    """Start the supervisor detached (see :func:`kernelagent.machine_files.spawn_detached`)."""
    return spawn_detached(
        "kernelagent.localmodel.supervisor",
        spec.model_dump_json(),
        paths.log,
        paths.directory,
        f"starting {spec.model}",
    )


async def _wait_until_ready(paths: ServicePaths, instance: str, timeout: float) -> ServiceState:
    """Until the supervisor ``instance`` says ready; its error if it fails or dies."""
    started = time.monotonic()
    appeared = False
    while True:
        state = read_state(paths)
        if state is not None and state.instance == instance:
            if state.status in ("ready", "restarting"):
                return state
            if state.status == "failed":
                remove_state(paths, instance)
                raise ServerStartError(state.error)
            appeared = True
        if appeared and not supervisor_alive(paths):
            remove_state(paths, instance)
            raise ServerStartError(
                f"the model service stopped while starting; see {paths.log}:\n{log_tail(paths)}"
            )
        waited = time.monotonic() - started
        if waited > timeout or (not appeared and waited > 60):  # 60 s: no supervisor came up
            raise ServerStartError(
                f"the model server was not ready within {timeout:.0f}s; see {paths.log}:\n"
                f"{log_tail(paths)}"
            )
        await asyncio.sleep(0.2)


def log_tail(paths: ServicePaths, lines: int = 15) -> str:
    return machine_log_tail(paths.log, lines)


# --- stopping -------------------------------------------------------------------------


def stop_service(paths: ServicePaths, state: ServiceState, timeout: float = 20.0) -> None:
    """SIGTERM the supervisor (it stops its server) and wait; SIGKILL both if it hangs.
    The caller holds the service lock, or accepts racing a client that starts it."""
    if supervisor_alive(paths) and pid_alive(state.supervisor_pid):
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while supervisor_alive(paths) and time.monotonic() < deadline:
            time.sleep(0.1)
        if supervisor_alive(paths):
            for pid in (state.supervisor_pid, state.pid):
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
    clean_up_dead_service(paths, state)


def clean_up_dead_service(paths: ServicePaths, state: ServiceState) -> None:
    """A supervisor that was killed: stop a server it left (if it is really that server)
    and remove the state."""
    pid = state.pid
    if pid and pid_alive(pid) and state.model_path in process_command_line(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    remove_state(paths, state.instance)


def stop(name: str | None = None, root: Path | None = None) -> list[tuple[ServiceState, int]]:
    """Stop the service of ``name`` (a key, or the model name it serves), or all of them.
    Returns each stopped state with the number of sessions that were using it."""
    stopped = []
    for paths, state in all_states(root):
        if name is not None and name not in (paths.key, state.model):
            continue
        users = len(live_leases(paths))
        with FileLock(paths.lock).held_for(STARTUP_TIMEOUT, f"starting {state.model}"):
            stop_service(paths, state)
        stopped.append((state, users))
    return stopped


# --- listing --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningService:
    """One row of ``kernelagent model ps``."""

    state: ServiceState
    sessions: list[LeaseInfo]
    rss_bytes: int | None
    busy_slots: int | None
    """Slots decoding right now (llama-server's ``/slots``); None if unknown."""

    @property
    def uptime(self) -> float:
        return time.time() - self.state.started


def running_services(root: Path | None = None) -> list[RunningService]:
    """The live services; leftovers of killed supervisors are cleaned up on the way."""
    found = []
    for paths, state in all_states(root):
        if not supervisor_alive(paths):
            lock = FileLock(paths.lock)
            if lock.try_acquire():  # nobody is starting it right now
                try:
                    if read_state(paths) == state and not supervisor_alive(paths):
                        clean_up_dead_service(paths, state)
                finally:
                    lock.release()
            continue
        found.append(
            RunningService(
                state=state,
                sessions=live_leases(paths),
                rss_bytes=process_rss(state.pid),
                busy_slots=busy_slots(state),
            )
        )
    return found


def busy_slots(state: ServiceState) -> int | None:
    if state.backend != "llama-server" or state.status != "ready":
        return None
    import json

    try:
        with urllib.request.urlopen(f"http://{state.host}:{state.port}/slots", timeout=2) as reply:
            slots = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if not isinstance(slots, list):
        return None
    return sum(1 for slot in slots if isinstance(slot, dict) and slot.get("is_processing"))
