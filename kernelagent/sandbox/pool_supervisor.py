"""The warm pool's supervisor: a detached process that keeps warmed sandboxes ready.

Started by :func:`kernelagent.sandbox.pool_client.ensure_pool` as
``python -m kernelagent.sandbox.pool_start SPEC_JSON`` (which detaches before importing
this module). It then

* holds ``alive`` locked for as long as it lives (takers and ``pool status`` test it);
* starts hardened sandboxes (the settings of its pool, plus the ``kernelagent.pool``
  label), runs the warm-up in each, checks the workspace is still empty, and publishes
  each as ``ready/<kernel>.json``; a taker claims one and owns it from then on: the
  supervisor forgets it and never touches it again;
* every few seconds discards ready sandboxes whose kernel died, measures their memory,
  and sizes the pool: as many as were asked for in the last two minutes, between the
  minimum and the maximum, and no more than the memory budget holds;
* stops its ready sandboxes and exits after ``idle_timeout`` seconds without a request,
  or on SIGTERM (``kernelagent pool stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
import time
import uuid
from collections import deque
from pathlib import Path

import docker.errors

from kernelagent.machine_files import FileLock, supervisor_log_line
from kernelagent.sandbox.docker_provisioner import docker_client
from kernelagent.sandbox.maintenance import discard_sandbox
from kernelagent.sandbox.pool_files import (
    LABEL_POOL,
    PoolPaths,
    PoolSpec,
    PoolState,
    ReadySandbox,
    claim,
    read_sizes,
    ready_records,
    remove_state,
    write_ready,
    write_state,
)
from kernelagent.sandbox.pool_memory import container_memory_bytes
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import run_warm_up

POLL_SECONDS = 0.5
HEALTH_CHECK_SECONDS = 2.0
DEMAND_WINDOW_SECONDS = 120.0
MEMORY_ESTIMATE_MB = 130.0
"""Per sandbox, until one has been measured."""
MAX_CONCURRENT_STARTS = 2
RETRY_AFTER_FAILURE_SECONDS = (2.0, 60.0)
REQUESTS_LOG_ROTATE_BYTES = 1_000_000


def log(message: str) -> None:
    supervisor_log_line("pool", message)


class PoolSupervisor:
    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.paths = PoolPaths.of(spec.key, Path(spec.root))
        settings = SandboxSettings.model_validate(spec.settings)
        self.settings = settings.model_copy(
            update={"labels": {**settings.labels, LABEL_POOL: spec.key}}
        )
        self.waiting: dict[str, Sandbox] = {}
        """Ready sandboxes by kernel id, while their record is in ``ready/``."""
        self.starting: set[asyncio.Task[None]] = set()
        self.requests: deque[float] = deque()
        self._requests_read = 0
        self.stopping = asyncio.Event()
        self.failures = 0
        self.next_start_allowed = 0.0
        self.image_id: str | None = None
        """The image the waiting sandboxes run; a rebuilt image (same tag) replaces them."""
        self.state = PoolState(
            key=spec.key,
            instance=spec.instance,
            supervisor_pid=os.getpid(),
            started=time.time(),
            image=settings.image,
            mem_limit=settings.mem_limit,
            cpus=settings.cpus,
            warm_up=spec.warm_up,
            min_size=spec.min_size,
            max_size=spec.max_size,
            memory_budget_mb=spec.memory_budget_mb,
            idle_timeout=spec.idle_timeout,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> int:
        alive = FileLock(self.paths.alive)
        if not alive.try_acquire():
            log(f"another supervisor already runs pool {self.spec.key}; exiting")
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            await self._discard_leftovers()
            self._read_requests()
            self._publish(status="ready")
            log(
                f"pool {self.spec.key} of {self.settings.image} ({self.settings.mem_limit}, "
                f"{self.settings.cpus} CPU): {self.spec.min_size}..{self.spec.max_size} sandboxes "
                f"within {self.spec.memory_budget_mb} MB; "
                f"stops after {self.spec.idle_timeout:.0f}s "
                "without a request"
            )
            await self._watch()
            return 0
        finally:
            self.state.status = "stopping"
            remove_state(self.paths, self.spec.instance)
            await self._stop_all()
            log("stopped")
            alive.release()

    def _publish(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self.state, name, value)
        self.state.ready = len(self.waiting)
        self.state.starting = len(self.starting)
        write_state(self.paths, self.state)

    async def _discard_leftovers(self) -> None:
        """Sandboxes a killed supervisor left ready: nobody owns them, so they go."""
        for record in ready_records(self.paths):
            claimed = claim(self.paths, record)
            if claimed is None:
                continue
            ready, lock = claimed
            log(f"discarding {ready.kernel_id}, left ready by an earlier supervisor")
            await asyncio.to_thread(discard_sandbox, ready.sandbox_state)
            shutil.rmtree(ready.sandbox_state["workspace"], ignore_errors=True)
            self._drop_owner_lock(ready.kernel_id, lock)
        for stale in self.paths.owned.glob("*.lock"):  # records gone: nobody can claim them
            lock = FileLock(stale)
            if lock.try_acquire():
                self._drop_owner_lock(stale.stem, lock)

    def _drop_owner_lock(self, kernel_id: str, lock: FileLock) -> None:
        """Only once the sandbox's record is gone (see ``pool_files.claim``)."""
        self.paths.owner_lock(kernel_id).unlink(missing_ok=True)
        lock.release()

    # -- watching ----------------------------------------------------------------------

    async def _watch(self) -> None:
        next_health_check = 0.0
        while not self.stopping.is_set():
            self._read_requests()
            self._forget_handed_out()
            if self._idle_seconds() >= self.spec.idle_timeout and self._stop_if_idle():
                log(f"no request for {self.spec.idle_timeout:.0f}s: stopping")
                return
            if time.monotonic() >= next_health_check:
                await self._discard_outdated()
                await self._discard_dead()
                await self._measure_memory()
                next_health_check = time.monotonic() + HEALTH_CHECK_SECONDS
            await self._resize()
            self._publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL_SECONDS)

    def _read_requests(self) -> None:
        if self._requests_read > REQUESTS_LOG_ROTATE_BYTES:
            os.replace(self.paths.requests, self.paths.requests.with_name("requests.log.1"))
            self._requests_read = 0  # takers append to a new file from now on
        try:
            with self.paths.requests.open("rb") as file:
                file.seek(self._requests_read)
                data = file.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._requests_read += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError, IndexError):
                self.requests.append(float(line.split()[0]))
        horizon = time.time() - max(DEMAND_WINDOW_SECONDS, self.spec.idle_timeout)
        while self.requests and self.requests[0] < horizon:
            self.requests.popleft()
        if self.requests:
            self.state.last_request = self.requests[-1]

    def _idle_seconds(self) -> float:
        since = max(self.state.started, self.state.last_request or 0.0)
        return time.time() - since

    def _forget_handed_out(self) -> None:
        for kernel_id in list(self.waiting):
            if not self.paths.ready_record(kernel_id).exists():
                self.waiting.pop(kernel_id)  # its taker owns it now; never shut it down here
                self.state.handed_out += 1
                log(f"handed out {kernel_id}")

    def _stop_if_idle(self) -> bool:
        """Under the pool lock, so that no taker starts a supervisor while we stop."""
        lock = FileLock(self.paths.lock)
        if not lock.try_acquire():
            return False
        try:
            remove_state(self.paths, self.spec.instance)
            return True
        finally:
            lock.release()

    # -- sizing ------------------------------------------------------------------------

    def target_size(self) -> int:
        """Sandboxes asked for in the demand window, between min and max, within budget."""
        minimum, maximum = read_sizes(self.paths, self.spec.min_size, self.spec.max_size)
        horizon = time.time() - DEMAND_WINDOW_SECONDS
        demand = sum(1 for moment in self.requests if moment >= horizon)
        wanted = max(minimum, min(maximum, demand))
        per_sandbox = self.state.memory_per_sandbox_mb or MEMORY_ESTIMATE_MB
        affordable = math.floor(self.spec.memory_budget_mb / per_sandbox)
        self.state.min_size, self.state.max_size = minimum, maximum
        return max(0, min(wanted, affordable))

    async def _resize(self) -> None:
        target = self.target_size()
        self.state.target = target
        surplus = len(self.waiting) - target
        for kernel_id in list(self.waiting)[: max(0, surplus)]:
            log(f"demand fell to {target}: stopping {kernel_id}")
            await self._discard(kernel_id)
        missing = target - len(self.waiting) - len(self.starting)
        room = MAX_CONCURRENT_STARTS - len(self.starting)
        if missing <= 0 or room <= 0 or time.monotonic() < self.next_start_allowed:
            return
        for _ in range(min(missing, room)):
            task = asyncio.create_task(self._start_one())
            self.starting.add(task)
            task.add_done_callback(self.starting.discard)

    async def _start_one(self) -> None:
        workspace = self.paths.workspaces / uuid.uuid4().hex[:16]
        try:
            sandbox = await Sandbox.start(self.settings, workspace)
            try:
                warm_up = await run_warm_up(sandbox, self.spec.warm_up)
                leaked = sorted(path.name for path in workspace.iterdir())
                if leaked:
                    raise RuntimeError(
                        f"the warm-up wrote into the workspace: {', '.join(leaked[:5])}"
                    )
            except BaseException:
                await sandbox.shutdown()
                raise
        except Exception as error:
            shutil.rmtree(workspace, ignore_errors=True)
            self.failures += 1
            delay = min(
                RETRY_AFTER_FAILURE_SECONDS[1],
                RETRY_AFTER_FAILURE_SECONDS[0] * 2 ** (self.failures - 1),
            )
            self.next_start_allowed = time.monotonic() + delay
            self.state.error = f"{error.__class__.__name__}: {error}"
            log(f"a pooled sandbox failed to start ({self.state.error}); next try in {delay:.0f}s")
            return
        if self.stopping.is_set():
            await sandbox.shutdown()
            shutil.rmtree(workspace, ignore_errors=True)
            return
        self.failures, self.state.error = 0, ""
        sandbox.client.stop_channels()  # the taker connects its own client
        kernel_id = str(sandbox.manager.kernel_id)
        provisioner = sandbox.manager.provisioner
        write_ready(
            self.paths,
            ReadySandbox(
                kernel_id=kernel_id,
                container_id=str(getattr(provisioner, "container_id", "")),
                sandbox_state=sandbox.state(),
                warm_up=warm_up.as_metadata(),
                ready_at=time.time(),
            ),
        )
        self.waiting[kernel_id] = sandbox
        log(f"ready: {kernel_id} (warm-up {warm_up.seconds:.2f}s)")

    # -- health --------------------------------------------------------------------------

    async def _discard_outdated(self) -> None:
        current = await asyncio.to_thread(_image_id, self.settings.image)
        if current is None or current == self.image_id:
            return
        if self.image_id is not None:
            log(
                f"{self.settings.image} was rebuilt: "
                f"replacing the {len(self.waiting)} ready sandboxes"
            )
            for kernel_id in list(self.waiting):
                await self._discard(kernel_id)
        self.image_id = current

    async def _discard_dead(self) -> None:
        for kernel_id, sandbox in list(self.waiting.items()):
            reason = await sandbox.death_reason()
            if reason is not None and await self._discard(kernel_id):
                self.state.discarded_dead += 1
                log(f"discarded {kernel_id}: its kernel {reason}")

    async def _measure_memory(self) -> None:
        measured = []
        for sandbox in self.waiting.values():
            container_id = getattr(sandbox.manager.provisioner, "container_id", None)
            if container_id:
                usage = await asyncio.to_thread(container_memory_bytes, container_id)
                if usage is not None:
                    measured.append(usage / 1e6)
        if measured:
            self.state.memory_per_sandbox_mb = round(max(measured), 1)

    async def _discard(self, kernel_id: str) -> bool:
        """Claim a waiting sandbox and shut it down; False if a taker got it first."""
        sandbox = self.waiting.pop(kernel_id, None)
        claimed = claim(self.paths, self.paths.ready_record(kernel_id))
        if claimed is None:
            if sandbox is not None:
                self.state.handed_out += 1
            return False
        _, lock = claimed
        if sandbox is not None:
            await sandbox.shutdown()
            shutil.rmtree(sandbox.workspace, ignore_errors=True)
        self._drop_owner_lock(kernel_id, lock)
        return True

    async def _stop_all(self) -> None:
        self.stopping.set()
        # Starting sandboxes see ``stopping`` and shut themselves down; cancelling them
        # mid-start could leave a container behind.
        await asyncio.gather(*self.starting, return_exceptions=True)
        for kernel_id in list(self.waiting):
            await self._discard(kernel_id)


def _image_id(image: str) -> str | None:
    try:
        return str(docker_client().images.get(image).id)
    except docker.errors.DockerException:
        return None


def run_supervisor(spec_json: str) -> int:
    spec = PoolSpec.model_validate_json(spec_json)
    return asyncio.run(PoolSupervisor(spec).run())


if __name__ == "__main__":
    sys.exit(run_supervisor(sys.argv[1]))
