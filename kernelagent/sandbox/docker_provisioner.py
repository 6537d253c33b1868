"""A jupyter_client kernel provisioner that runs ipykernel in a hardened Docker container.

Registered under the ``jupyter_client.kernel_provisioners`` entry point as
``kernelagent-docker``, so any Jupyter frontend (JupyterLab, nbclient, papermill,
``jupyter console``) can use it through a kernelspec, and the agent is just another
client.

The container has no network. The kernel talks ZMQ over ``ipc`` sockets that live
in a per-kernel runtime directory bind-mounted into the container; the host's
jupyter_client connects to the same socket files. With ``network_allow`` the container
still has no interface: an :class:`~kernelagent.sandbox.egress_proxy.EgressProxy` on a
unix socket (mounted read-only) is its only way out, for the listed destinations only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Bool, Dict, Float, Int, List, Unicode

from kernelagent.errors import KernelAgentError
from kernelagent.sandbox import egress_setup
from kernelagent.sandbox.egress_proxy import EgressListener, EgressProxy, EgressRecord
from kernelagent.sandbox.settings import setting_default, setting_help
from kernelagent.sandbox.workspace_access import ensure_writable, sandbox_identity

CONTAINER_RUNTIME_DIR = "/run/kernelagent"
CONTAINER_WORKSPACE = "/workspace"
LABEL_MANAGED = "kernelagent.managed"
LABEL_KERNEL_ID = "kernelagent.kernel_id"
LABEL_OWNER_PID = "kernelagent.owner_pid"
LABEL_OWNER_HOST = "kernelagent.owner_host"
LABEL_WORKSPACE = "kernelagent.workspace"

#: The only environment the kernel sees. Nothing from the host is copied in.
CONTAINER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
    "IPYTHONDIR": "/tmp/.ipython",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


class DockerUnavailableError(KernelAgentError, RuntimeError):
    """No Docker engine answers; says how to get one."""


_shared_client: docker.DockerClient | None = None


def docker_client() -> docker.DockerClient:
    """A client for the local Docker engine (shared), or a clear error saying what to do."""
    global _shared_client
    if _shared_client is not None:
        return _shared_client
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as error:
        raise DockerUnavailableError(
            "No Docker engine is reachable "
            f"({error.__class__.__name__}). Install and start one "
            "(Debian: `apt-get install docker.io && dockerd --bridge=none &`), "
            "or use `--sandbox local` (not isolated)."
        ) from error
    _shared_client = client
    return client


def kernel_runtime_dir(kernel_id: str) -> Path:
    """Host-only directory of a kernel (short: ipc socket paths must fit in 107 bytes)."""
    return Path(jupyter_runtime_dir()) / f"ka-{kernel_id.replace('-', '')[:16]}"


def shared_dir(runtime_dir: Path) -> Path:
    """The part of the runtime directory the sandbox sees: its ipc sockets and its
    connection file. The host never follows a path in it that the sandbox could have
    replaced: it is recreated, empty, before every (re)start."""
    return runtime_dir / "s"


def container_name(kernel_id: str) -> str:
    return f"kernelagent-{kernel_id}"


def describe_exit(state: dict[str, Any]) -> str:
    """Why a container stopped, from its ``State`` as Docker reports it."""
    if state.get("OOMKilled"):
        return "OOM-killed: the kernel exceeded the sandbox memory limit"
    code = state.get("ExitCode", 0)
    if code > 128:
        signum = code - 128
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        if signum == signal.SIGSEGV:
            return f"crashed: the kernel died of {name} (segmentation fault)"
        if signum == signal.SIGKILL:
            return f"killed: the kernel received {name}"
        return f"crashed: the kernel died of {name}"
    if state.get("Error"):
        return f"failed: {state['Error']}"
    return f"exited: the kernel process exited with code {code}"


class DockerProvisioner(KernelProvisionerBase):
    """Runs the kernel in a Docker container: no network, non-root, read-only root.

    Created by jupyter_client's ``KernelProvisionerFactory`` for a kernelspec whose
    metadata names ``kernelagent-docker``; the kernelspec's ``config`` sets the traits
    below.
    """

    # The limits and egress settings: defaults and help are SandboxSettings'.
    image = Unicode(setting_default("image"), config=True, help=setting_help("image"))
    workspace = Unicode(
        "",
        config=True,
        help="Host directory mounted read-write at /workspace. Empty: the `cwd` the "
        "kernel is started with (the notebook's directory in JupyterLab).",
    )
    mem_limit = Unicode(setting_default("mem_limit"), config=True, help=setting_help("mem_limit"))
    cpus = Float(setting_default("cpus"), config=True, help=setting_help("cpus"))
    pids_limit = Int(setting_default("pids_limit"), config=True, help=setting_help("pids_limit"))
    tmpfs_size = Unicode(
        setting_default("tmpfs_size"), config=True, help=setting_help("tmpfs_size")
    )
    network = Unicode(setting_default("network"), config=True, help=setting_help("network"))
    read_only = Bool(True, config=True, help="Mount the image's root filesystem read-only.")
    runtime = Unicode(setting_default("runtime"), config=True, help=setting_help("runtime"))
    user = Unicode(
        "",
        config=True,
        help="uid:gid in the container. Empty: the host user; when the host runs as root, the "
        "workspace owner, or 1000 (with an ACL entry on the workspace) when root owns it.",
    )
    network_allow = List(Unicode(), config=True, help=setting_help("network_allow"))
    network_headers = Dict(config=True, help=setting_help("network_headers"))
    egress_log = Unicode(
        setting_default("egress_log"), config=True, help=setting_help("egress_log")
    )
    egress_port = Int(
        egress_setup.DEFAULT_EGRESS_PORT, config=True, help="Port of the proxy inside the sandbox."
    )
    extra_labels = Dict(config=True, help="Extra labels for the container.")

    container_id: str | None = None
    runtime_dir: Path | None = None
    workspace_dir: Path | None = None
    egress_proxy: EgressProxy | None = None
    _identity: tuple[int, int] | None = None
    _docker: docker.DockerClient | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.egress_listeners: list[EgressListener] = []
        """Told about every egress record (the Sandbox forwards them to its session)."""

    @property
    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            self._docker = docker_client()
        return self._docker

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    # -- launch ----------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Called by the KernelManager before launch: writes the connection files."""
        km = self.parent
        if km is None:
            raise RuntimeError("the provisioner has no kernel manager to configure")
        self.runtime_dir = kernel_runtime_dir(self.kernel_id)
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.workspace_dir = Path(self.workspace or kwargs.get("cwd") or os.getcwd()).resolve()
        self.workspace_dir.mkdir(parents=True, exist_ok=True)
        self._identity = sandbox_identity(self.workspace_dir, self.user)
        ensure_writable(self.workspace_dir, self._identity[0])
        self._fresh_shared_dir()
        if self.network_allow:
            egress_setup.check_settings(list(self.network_allow), self.network)
            egress_setup.prepare_egress_dir(self.runtime_dir)

        km.transport = "ipc"
        km.ip = str(shared_dir(self.runtime_dir) / "ipc")
        km.connection_file = str(self.runtime_dir / "connection.json")  # host-only
        km.write_connection_file()
        self.connection_info = km.get_connection_info()
        self._write_container_connection_file()

        argv = [
            CONTAINER_RUNTIME_DIR + "/connection.json" if arg == "{connection_file}" else arg
            for arg in self.kernel_spec.argv
        ]
        if self.network_allow:
            argv = egress_setup.wrap_command(argv, self.egress_port)
        kwargs.pop("env", None)  # the host environment never enters the sandbox
        kwargs.pop("extra_arguments", None)
        return {"cmd": argv, **kwargs}

    def _fresh_shared_dir(self) -> None:
        """An empty shared directory owned by the sandbox user. No container runs now
        (first start, or a restart after the old one was removed), so nothing can race."""
        assert self.runtime_dir is not None
        shared = shared_dir(self.runtime_dir)
        if shared.is_symlink() or shared.is_file():
            shared.unlink()
        elif shared.exists():
            shutil.rmtree(shared)  # removes links, never follows them
        shared.mkdir(mode=0o700)
        if os.geteuid() == 0:
            uid, gid = self._sandbox_user()
            os.chown(shared, uid, gid)

    def _write_container_connection_file(self) -> None:
        """The kernel's own connection file (ipykernel rewrites it, so the sandbox owns it)."""
        assert self.runtime_dir is not None
        info = dict(self.connection_info)
        info["ip"] = CONTAINER_RUNTIME_DIR + "/ipc"
        for key, value in list(info.items()):
            if isinstance(value, bytes):
                info[key] = value.decode()
        path = shared_dir(self.runtime_dir) / "connection.json"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w") as file:
            if os.geteuid() == 0:
                uid, gid = self._sandbox_user()
                os.fchown(file.fileno(), uid, gid)
            file.write(json.dumps(info))

    def _sandbox_user(self) -> tuple[int, int]:
        """uid:gid in the container, decided in ``pre_launch`` (see workspace_access)."""
        if self._identity is None:
            self._identity = sandbox_identity(self.workspace_dir or Path.cwd(), self.user)
        return self._identity

    def container_options(self, cmd: list[str]) -> dict[str, Any]:
        """The ``docker run`` options: the hardening lives here, in one place."""
        assert self.runtime_dir is not None and self.workspace_dir is not None
        uid, gid = self._sandbox_user()
        environment = dict(CONTAINER_ENV)
        volumes = {
            str(shared_dir(self.runtime_dir)): {"bind": CONTAINER_RUNTIME_DIR, "mode": "rw"},
            str(self.workspace_dir): {"bind": CONTAINER_WORKSPACE, "mode": "rw"},
        }
        if self.network_allow:
            allowlist = egress_setup.check_settings(list(self.network_allow), self.network)
            environment.update(egress_setup.container_environment(allowlist, self.egress_port))
            volumes[str(egress_setup.egress_dir(self.runtime_dir))] = {
                "bind": egress_setup.CONTAINER_EGRESS_DIR,
                "mode": "ro",
            }
        options: dict[str, Any] = {
            "image": self.image,
            "command": cmd,
            "name": container_name(self.kernel_id),
            "init": True,
            "user": f"{uid}:{gid}",
            "environment": environment,
            "working_dir": CONTAINER_WORKSPACE,
            "volumes": volumes,
            "network_mode": self.network,
            "read_only": self.read_only,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_size},mode=1777"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": self.mem_limit,
            "memswap_limit": self.mem_limit,
            "nano_cpus": int(self.cpus * 1e9),
            "pids_limit": self.pids_limit,
            "ipc_mode": "private",
            "labels": {
                LABEL_MANAGED: "1",
                LABEL_KERNEL_ID: self.kernel_id,
                LABEL_OWNER_PID: str(os.getpid()),
                LABEL_OWNER_HOST: socket.gethostname(),
                LABEL_WORKSPACE: str(self.workspace_dir),
                **self.extra_labels,
            },
        }
        if self.runtime:
            options["runtime"] = self.runtime
        return options

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Called by the KernelManager to start the kernel: creates the container (after
        the egress proxy listens, when the settings allow any destination)."""
        options = self.container_options(cmd)
        await self.start_egress_proxy()
        container = await asyncio.to_thread(self._run_container, options)
        self.container_id = container.id
        return self.connection_info

    def _run_container(self, options: dict[str, Any]) -> Container:
        # create + start, never ``run``: the SDK's ``run`` would try to pull a missing image.
        try:
            container = self.docker.containers.create(**options)
        except docker.errors.ImageNotFound:
            raise RuntimeError(
                f"The sandbox image {self.image} is not built yet: run `kernelagent image build`."
            ) from None
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: a container with this name is left over
                raise
            self.docker.containers.get(options["name"]).remove(force=True)
            container = self.docker.containers.create(**options)
        container.start()
        return container

    # -- process-like interface (mirrors subprocess.Popen) ----------------------------

    def _container(self) -> Container | None:
        if self.container_id is None:
            return None
        try:
            return self.docker.containers.get(self.container_id)
        except docker.errors.NotFound:
            return None

    async def poll(self) -> int | None:
        """None while the kernel runs, else its exit code (-1 if the container is gone)."""
        container = await asyncio.to_thread(self._container)
        if container is None:
            return -1
        state = container.attrs["State"]
        if state.get("Running"):
            return None
        return int(state.get("ExitCode", -1))

    async def wait(self) -> int | None:
        container = await asyncio.to_thread(self._container)
        if container is None:
            return -1
        try:
            result = await asyncio.to_thread(container.wait)
        except docker.errors.NotFound:
            return -1
        return int(result.get("StatusCode", -1))

    async def send_signal(self, signum: int) -> None:
        """Interrupts arrive here (SIGINT); docker-init forwards them to the kernel."""
        container = await asyncio.to_thread(self._container)
        if container is not None:
            with contextlib.suppress(docker.errors.APIError):  # the container already stopped
                await asyncio.to_thread(container.kill, signal=int(signum))

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        """Called after the kernel stopped: removes the container (and, unless this
        is a restart, the runtime directory). The workspace always stays."""
        container = await asyncio.to_thread(self._container)
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                await asyncio.to_thread(container.remove, force=True)
        self.container_id = None
        if not restart:
            await self.stop_egress_proxy()
            if self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)

    async def exit_reason(self) -> str | None:
        """Why the kernel is not running, or None if it is."""
        if self.container_id is None:
            return "not started"
        container = await asyncio.to_thread(self._container)
        if container is None:
            return "removed: the sandbox container no longer exists"
        state = container.attrs["State"]
        if state.get("Running"):
            return None
        return describe_exit(state)

    # -- egress --------------------------------------------------------------------------

    async def start_egress_proxy(self) -> None:
        """Start (or, in a process that re-attached, restart) this kernel's egress proxy.

        Called by ``launch_kernel`` and by ``Sandbox.attach``; a no-op without
        ``network_allow`` or when the proxy already runs (a kernel restart keeps it).
        """
        if not self.network_allow or self.runtime_dir is None:
            return
        if self.egress_proxy is not None and self.egress_proxy.running:
            return
        allowlist = egress_setup.check_settings(list(self.network_allow), self.network)
        uid, gid = self._sandbox_user()
        as_root = os.geteuid() == 0
        proxy = EgressProxy(
            allowlist,
            egress_setup.socket_path(self.runtime_dir),
            log_path=Path(self.egress_log)
            if self.egress_log
            else egress_setup.default_log_path(self.kernel_id),
            headers=egress_setup.expand_headers(dict(self.network_headers)),
            socket_owner=(uid, gid) if as_root else None,
            socket_mode=0o660 if as_root or uid == os.geteuid() else 0o666,
            kernel_id=self.kernel_id,
        )
        proxy.add_listener(self._on_egress)
        await proxy.start()
        self.egress_proxy = proxy

    async def stop_egress_proxy(self) -> None:
        """Close the proxy; from then on the sandbox has no way out (fails closed)."""
        proxy, self.egress_proxy = self.egress_proxy, None
        if proxy is not None:
            await proxy.aclose()

    def _on_egress(self, record: EgressRecord) -> None:
        for listener in list(self.egress_listeners):
            listener(record)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 5.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, 20.0)

    # -- re-attach from another process -----------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(
            container_id=self.container_id,
            runtime_dir=str(self.runtime_dir) if self.runtime_dir else None,
            workspace_dir=str(self.workspace_dir) if self.workspace_dir else None,
            image=self.image,
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        runtime_dir = provisioner_info.get("runtime_dir")
        workspace_dir = provisioner_info.get("workspace_dir")
        self.runtime_dir = Path(runtime_dir) if runtime_dir else None
        self.workspace_dir = Path(workspace_dir) if workspace_dir else None
        self.image = provisioner_info.get("image", self.image)

    def resolve_path(self, path: str) -> str | None:
        """Map a container path (as reported by the kernel) to the host workspace."""
        if self.workspace_dir and path.startswith(CONTAINER_WORKSPACE):
            relative = path[len(CONTAINER_WORKSPACE) :].lstrip("/")
            return str(self.workspace_dir / relative)
        return None
