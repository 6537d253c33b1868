"""A Sandbox: one kernel (in Docker or a local subprocess) plus its workspace.

This is the agent's computer. Both kinds are ordinary jupyter_client kernels: the
Docker one through the ``kernelagent-docker`` provisioner, the local one through
jupyter_client's ``local-provisioner``. Everything above this layer only sees
:class:`Sandbox`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.paths import jupyter_runtime_dir

from kernelagent.errors import KernelAgentError
from kernelagent.execution.outputs import KernelOutputs, OutputCallback
from kernelagent.execution.result import ExecutionResult
from kernelagent.execution.run import execute, shell_reply
from kernelagent.manifest import (
    EXPRESSION,
    EXPRESSION_NAME,
    KERNEL_SETUP,
    SNAPSHOT_EXPRESSION,
    parse_expression,
)
from kernelagent.sandbox.docker_provisioner import (
    CONTAINER_WORKSPACE,
    DockerProvisioner,
)
from kernelagent.sandbox.egress_proxy import EgressListener, EgressProxy
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.workspace_access import is_protected, share_with_sandbox

log = logging.getLogger(__name__)

KERNEL_NAME = "kernelagent"
LOCAL_WARNING = (
    "kernelagent: the local sandbox is NOT isolated: code runs as you, on this machine, "
    "with your files and network. Use --sandbox docker for isolation."
)


class SandboxError(KernelAgentError, RuntimeError):
    """The sandbox could not start or be reached; the message says what to do."""


class SandboxDeadError(SandboxError):
    pass


def kernel_spec_for(settings: SandboxSettings) -> KernelSpec:
    """An in-memory kernelspec that runs ipykernel in the requested sandbox kind."""
    if settings.kind == "docker":
        return KernelSpec(
            argv=["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (kernelagent sandbox)",
            language="python",
            interrupt_mode="signal",
            metadata={
                "kernel_provisioner": {
                    "provisioner_name": "kernelagent-docker",
                    "config": settings.provisioner_config(),
                }
            },
        )
    return KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3 (kernelagent local, not isolated)",
        language="python",
        interrupt_mode="signal",
        metadata={"kernel_provisioner": {"provisioner_name": "local-provisioner", "config": {}}},
    )


class _OneSpecManager(KernelSpecManager):
    """A KernelSpecManager that knows exactly one, in-memory, kernelspec."""

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name != KERNEL_NAME:
            raise NoSuchKernel(kernel_name)
        return self._spec

    def find_kernel_specs(self) -> dict[str, str]:
        return {KERNEL_NAME: ""}


def _local_env(workspace: Path) -> dict[str, str]:
    """The local kernel's environment: enough to run, and no host secrets."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["HOME"] = os.environ.get("HOME", str(workspace))
    return env


class Sandbox:
    """A running kernel with a host workspace. Create with :meth:`start` or :meth:`attach`."""

    def __init__(
        self,
        manager: AsyncKernelManager,
        settings: SandboxSettings,
        workspace: Path,
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.workspace = workspace
        self.client = manager.client()
        self._lock = asyncio.Lock()
        self._manifest_ready = False
        self._outputs = KernelOutputs()
        """The outputs of the cells this kernel ran, for display ids that later cells update."""
        self.after_restart: list[Callable[[Sandbox], Awaitable[object]]] = []
        """Run on each new kernel after a restart (the session's warm-up, for one)."""

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    async def start(
        cls, settings: SandboxSettings | None = None, workspace: str | Path | None = None
    ) -> Sandbox:
        """Start a kernel in a fresh sandbox and wait until it answers."""
        settings = settings or SandboxSettings()
        if workspace is None:
            workspace = tempfile.mkdtemp(prefix="kernelagent-workspace-")
        workspace = Path(workspace).resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        if settings.kind == "local":
            print(LOCAL_WARNING, file=sys.stderr)
        elif workspace.stat().st_uid == 0 and not is_protected(workspace):
            share_with_sandbox(workspace)  # a directory root made: the sandbox's own
        manager = _manager(settings, kernel_id=str(uuid.uuid4()))
        try:
            if settings.kind == "docker":
                await manager.start_kernel(cwd=str(workspace))
            else:
                await manager.start_kernel(cwd=str(workspace), env=_local_env(workspace))
        except Exception as error:
            await _quietly_shutdown(manager)
            raise SandboxError(f"the sandbox kernel failed to start: {error}") from error
        sandbox = cls(manager, settings, workspace)
        await sandbox._wait_ready()
        return sandbox

    async def _wait_ready(self) -> None:
        self.client.start_channels()
        try:
            await wait_for_kernel(self.client, self.settings.startup_timeout, self.death_reason)
        except (RuntimeError, TimeoutError) as error:
            reason = await self.death_reason()
            await self.shutdown()
            raise SandboxError(
                f"the sandbox kernel did not become ready: {reason or error}"
            ) from error

    def state(self) -> dict[str, Any]:
        """What another process needs to re-attach to this running sandbox (JSON-safe)."""
        info = self.manager.get_connection_info(session=False)
        connection = {k: v.decode() if isinstance(v, bytes) else v for k, v in info.items()}
        provisioner = self.manager.provisioner
        provisioner_info: dict[str, Any] = {}
        if isinstance(provisioner, DockerProvisioner):
            provisioner_info = {
                "container_id": provisioner.container_id,
                "runtime_dir": str(provisioner.runtime_dir),
                "workspace_dir": str(provisioner.workspace_dir),
                "image": provisioner.image,
            }
        elif provisioner is not None and getattr(provisioner, "pid", None):
            pid, pgid = getattr(provisioner, "pid", None), getattr(provisioner, "pgid", None)
            provisioner_info = {"pid": pid, "pgid": pgid}
        return {
            "kernel_id": self.manager.kernel_id,
            "settings": self.settings.model_dump(),
            "workspace": str(self.workspace),
            "connection_info": connection,
            "connection_file": self.manager.connection_file,
            "provisioner_info": provisioner_info,
        }

    @classmethod
    async def attach(cls, state: dict[str, Any]) -> Sandbox:
        """Re-attach to a sandbox started by another (possibly dead) process."""
        settings = SandboxSettings.model_validate(state["settings"])
        manager = _manager(settings, kernel_id=state["kernel_id"])
        manager.load_connection_info(state["connection_info"])
        manager.connection_file = state["connection_file"]
        manager.provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
            state["kernel_id"], manager.kernel_spec, parent=manager
        )
        await manager.provisioner.load_provisioner_info(
            {
                "kernel_id": state["kernel_id"],
                "connection_info": state["connection_info"],
                **state["provisioner_info"],
            }
        )
        sandbox = cls(manager, settings, Path(state["workspace"]))
        reason = await sandbox.death_reason()
        if reason is not None:
            raise SandboxDeadError(f"cannot re-attach: the sandbox is gone ({reason})")
        if isinstance(manager.provisioner, DockerProvisioner):
            await manager.provisioner.start_egress_proxy()  # the old process's proxy died with it
        await sandbox._wait_ready()
        return sandbox

    async def shutdown(self) -> None:
        """Stop the kernel and remove its container. The workspace stays."""
        self.client.stop_channels()
        await _quietly_shutdown(self.manager)

    async def restart(self) -> None:
        """A new kernel in the same workspace; all in-memory state is lost (the
        ``after_restart`` set-up runs again)."""
        await self._restart_kernel()
        await self._set_up_after_restart()

    async def _restart_kernel(self) -> None:
        self._manifest_ready = False
        self._outputs = KernelOutputs()
        await self.manager.restart_kernel(now=True)
        await wait_for_kernel(self.client, self.settings.startup_timeout, self.death_reason)

    async def _set_up_after_restart(self) -> None:
        for set_up in self.after_restart:  # outside ``_lock``: set-up code runs cells too
            await set_up(self)

    async def interrupt(self) -> None:
        await self.manager.interrupt_kernel()

    async def death_reason(self) -> str | None:
        """None while the kernel lives; otherwise why it died (exited, OOM-killed, crashed)."""
        provisioner = self.manager.provisioner
        if isinstance(provisioner, DockerProvisioner):
            return await provisioner.exit_reason()
        if provisioner is None:
            return "not started"
        code = await provisioner.poll()
        if code is None:
            return None
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            if -code == signal.SIGSEGV:
                return f"crashed: the kernel died of {name} (segmentation fault)"
            return f"killed: the kernel died of {name}"
        return f"exited: the kernel process exited with code {code}"

    async def is_alive(self) -> bool:
        return await self.death_reason() is None

    # -- egress ----------------------------------------------------------------------

    @property
    def egress(self) -> EgressProxy | None:
        """The host proxy of a sandbox with ``network_allow``; None when it has no egress."""
        provisioner = self.manager.provisioner
        return provisioner.egress_proxy if isinstance(provisioner, DockerProvisioner) else None

    def on_egress(self, listener: EgressListener) -> None:
        """Call ``listener`` with every egress record (allowed or refused) of this sandbox,
        on the event loop that runs it. The session uses it to write
        ``metadata.kernelagent.egress``."""
        provisioner = self.manager.provisioner
        if isinstance(provisioner, DockerProvisioner):
            provisioner.egress_listeners.append(listener)

    # -- running code ----------------------------------------------------------------

    async def execute(
        self,
        code: str,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        *,
        manifest: bool = False,
        cell_id: str | None = None,
    ) -> ExecutionResult:
        """Run a cell; outputs come back as nbformat v4 dicts.

        With ``manifest``, the result's ``manifest`` lists the names the cell defined
        or changed (computed in the kernel, returned with the reply). ``cell_id`` names
        the cell in ``display_updates`` of a later cell that updates its displays.
        """
        restarted = False
        async with self._lock:
            expressions = None
            if manifest:
                await self._install_manifest()
                expressions = {EXPRESSION_NAME: EXPRESSION}
            result = await execute(
                self.client,
                code,
                timeout=timeout,
                output_limit=self.settings.output_limit,
                on_output=on_output,
                check_death=self.death_reason,
                interrupt=self.interrupt,
                interrupt_grace=self.settings.interrupt_grace,
                user_expressions=expressions,
                outputs=self._outputs,
                cell_id=cell_id,
            )
            if result.interrupt_ignored:
                await self._restart_kernel()
                restarted = True
                result.detail += "; the kernel was restarted and its variables are lost"
            elif (
                manifest
                and result.status == "error"
                and EXPRESSION_NAME not in result.user_expressions
            ):
                # the kernel skips user_expressions after an error; the names a failed cell
                # defined before it raised are asked for separately
                reply = await self._run_hidden("", user_expressions={EXPRESSION_NAME: EXPRESSION})
                result.user_expressions = reply["content"].get("user_expressions", {})
        if restarted:
            await self._set_up_after_restart()
        return result

    async def _install_manifest(self) -> None:
        if not self._manifest_ready:
            await self._run_hidden(KERNEL_SETUP)
            self._manifest_ready = True

    async def run_silently(
        self, code: str, user_expressions: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run code with no execution count, history or outputs; returns the execute reply.
        For set-up code such as the warm-up (``sandbox.warm_up``)."""
        async with self._lock:
            return await self._run_hidden(code, user_expressions)

    async def _run_hidden(
        self, code: str, user_expressions: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run code that leaves no trace in the history or the outputs; returns the reply."""
        msg_id = self.client.execute(
            code, silent=True, store_history=False, user_expressions=user_expressions or {}
        )
        return await self._shell_reply(msg_id)

    async def _shell_reply(self, msg_id: str) -> dict[str, Any]:
        """The kernel's reply to ``msg_id``, within ``startup_timeout`` in all."""
        reply = await shell_reply(self.client, msg_id, timeout=self.settings.startup_timeout)
        if reply is not None:
            return reply
        dead = await self.death_reason()
        raise SandboxError(
            f"the kernel did not answer within {self.settings.startup_timeout:.0f} s"
            + (f": it {dead}" if dead else " (the machine may be overloaded)")
            + "; try again, or raise SandboxSettings.startup_timeout"
        )

    async def snapshot(self) -> dict[str, Any]:
        """Fingerprints of every name in the kernel's namespace (for restore checks)."""
        async with self._lock:
            await self._install_manifest()
            reply = await self._run_hidden("", user_expressions={"snapshot": SNAPSHOT_EXPRESSION})
        return parse_expression(reply["content"].get("user_expressions", {}), "snapshot") or {}

    async def shell(
        self, command: str, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        """Run a shell command inside the sandbox (as a ``%%bash`` cell)."""
        return await self.execute(shell_cell(command), timeout=timeout, on_output=on_output)

    # -- files -----------------------------------------------------------------------

    @property
    def kernel_workspace(self) -> str:
        """The workspace path as the code in the kernel sees it."""
        return CONTAINER_WORKSPACE if self.settings.kind == "docker" else str(self.workspace)

    def workspace_path(self, relative: str | Path) -> Path:
        """A host path inside the workspace; refuses paths that escape it."""
        relative = Path(relative)
        if relative.is_absolute() and self.settings.kind == "docker":
            relative = relative.relative_to(CONTAINER_WORKSPACE)
        path = (self.workspace / relative).resolve()
        if path != self.workspace and self.workspace not in path.parents:
            raise ValueError(f"{relative} is outside the sandbox workspace {self.workspace}")
        return path

    def put_file(self, source: str | Path, destination: str | Path | None = None) -> Path:
        """Copy a host file into the workspace; returns its host path."""
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"{source} does not exist or is not a file")
        target = self.workspace_path(destination or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        share_with_sandbox(target)
        return target

    def get_file(self, relative: str | Path, destination: str | Path) -> Path:
        """Copy a workspace file out to the host."""
        source = self.workspace_path(relative)
        if not source.is_file():
            raise FileNotFoundError(f"{relative} is not a file in the workspace")
        return Path(shutil.copyfile(source, destination))


async def wait_for_kernel(
    client: AsyncKernelClient,
    timeout: float,
    death_reason: Callable[[], Awaitable[str | None]] | None = None,
) -> None:
    """Wait until the kernel answers kernel_info and its iopub messages reach us.

    Like ``wait_for_ready``, with short polls (the kernel queues requests sent before it
    binds), so a fresh sandbox is used as soon as it is up.
    """
    deadline = time.monotonic() + timeout
    next_liveness_check = time.monotonic() + 1.0
    sent: set[str] = set()
    while time.monotonic() < deadline:
        sent.add(client.kernel_info())
        try:
            reply = await client.get_shell_msg(timeout=0.05)
        except Empty:
            reply = None
        if reply is not None and reply["parent_header"].get("msg_id") in sent:
            try:
                await client.get_iopub_msg(timeout=0.05)
            except Empty:
                continue
            while True:  # drain the status messages of the other kernel_info requests
                try:
                    await client.get_iopub_msg(timeout=0.01)
                except Empty:
                    break
            while True:
                try:
                    await client.get_shell_msg(timeout=0.001)
                except Empty:
                    return
        if death_reason is not None and time.monotonic() >= next_liveness_check:
            next_liveness_check = time.monotonic() + 1.0
            reason = await death_reason()
            if reason is not None:
                raise RuntimeError(f"the kernel died while starting: {reason}")
    raise TimeoutError(f"the kernel did not answer within {timeout:g} s")


def shell_cell(command: str) -> str:
    return "%%bash\n" + command


def _manager(settings: SandboxSettings, kernel_id: str) -> AsyncKernelManager:
    manager = AsyncKernelManager(
        kernel_name=KERNEL_NAME,
        kernel_id=kernel_id,
        kernel_spec_manager=_OneSpecManager(kernel_spec_for(settings)),
    )
    if settings.kind == "local":
        # ZMQ over ipc sockets, as in Docker: nothing listens on a TCP port.
        runtime = Path(jupyter_runtime_dir())
        runtime.mkdir(parents=True, exist_ok=True)
        manager.transport = "ipc"
        manager.connection_file = str(runtime / f"kernelagent-local-{kernel_id}.json")
        manager.ip = str(runtime / f"kernelagent-local-{kernel_id}-ipc")
    return manager


async def _quietly_shutdown(manager: AsyncKernelManager) -> None:
    try:
        if manager.provisioner is not None:
            await manager.shutdown_kernel(now=True)
    except Exception as error:  # the kernel may already be gone; cleanup must go on
        log.debug("shutdown: %s", error)
        if manager.provisioner is not None:
            await manager.provisioner.cleanup(restart=False)
