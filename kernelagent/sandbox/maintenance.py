"""Finding and removing sandboxes nobody owns any more, and installing the kernelspec."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from kernelagent.machine_files import pid_alive
from kernelagent.sandbox.docker_provisioner import (
    LABEL_KERNEL_ID,
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_WORKSPACE,
    docker_client,
    kernel_runtime_dir,
)
from kernelagent.sandbox.pool_files import pooled_container_owned
from kernelagent.sandbox.sandbox import KERNEL_NAME, kernel_spec_for
from kernelagent.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

SANDBOX_DISPLAY_NAME = "Python 3 (kernelagent sandbox)"
_FALLBACK_KERNEL_NAME = "kernelagent-sandbox"


@dataclass
class SandboxContainer:
    name: str
    kernel_id: str
    status: str
    owner_pid: int | None
    orphan: bool
    why: str
    workspace: str = ""


StaleJudge = Callable[[Mapping[str, str]], str | None]
"""Given a container's labels, why it is stale (None: no verdict)."""


def list_sandboxes(
    keep_kernel_ids: frozenset[str] = frozenset(), stale: StaleJudge | None = None
) -> list[SandboxContainer]:
    """Every kernelagent container, and whether it is an orphan.

    An orphan is stopped, or was started on this host by a process that is gone and
    is not kept (``keep_kernel_ids``: sandboxes that paused sessions will re-attach to),
    or what ``stale`` says is stale (a cluster's store: its session's node is gone).
    """
    client = docker_client()
    found = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        labels = container.labels
        kernel_id = labels.get(LABEL_KERNEL_ID, "")
        pid_text = labels.get(LABEL_OWNER_PID, "")
        owner_pid = int(pid_text) if pid_text.isdigit() else None
        same_host = labels.get(LABEL_OWNER_HOST) == socket.gethostname()
        verdict = stale(labels) if stale is not None else None
        if container.status != "running":
            orphan, why = True, f"container is {container.status}"
        elif verdict is not None:
            orphan, why = True, verdict
        elif kernel_id in keep_kernel_ids:
            orphan, why = False, "kept by a session"
        elif same_host and owner_pid is not None and not pid_alive(owner_pid):
            pooled_owner = pooled_container_owned(labels, kernel_id)
            if pooled_owner is not None:
                orphan, why = False, pooled_owner
            else:
                orphan, why = True, f"owner process {owner_pid} is gone"
        else:
            orphan, why = False, f"owned by live process {owner_pid}"
        found.append(
            SandboxContainer(
                container.name,
                kernel_id,
                container.status,
                owner_pid,
                orphan,
                why,
                labels.get(LABEL_WORKSPACE, ""),
            )
        )
    return found


def remove_sandboxes(targets: list[SandboxContainer]) -> int:
    client = docker_client()
    return sum(_remove_container(client, target.name, target.kernel_id) for target in targets)


def discard_sandbox(state: dict[str, Any]) -> bool:
    """Remove the container a ``Sandbox.state()`` names, without talking to its kernel.

    Returns False when the state names no container (a local sandbox): the caller must
    attach and shut it down instead.
    """
    container_id = (state.get("provisioner_info") or {}).get("container_id")
    if not container_id:
        return False
    _remove_container(docker_client(), container_id, state.get("kernel_id"))
    return True


def _remove_container(client, container: str, kernel_id: str | None) -> bool:
    """Force-remove a container (by name or id) and its host runtime directory; False if it was
    gone."""
    removed = True
    try:
        client.containers.get(container).remove(force=True)
    except docker.errors.NotFound:
        removed = False
    if kernel_id:
        shutil.rmtree(kernel_runtime_dir(kernel_id), ignore_errors=True)
    return removed


def install_kernelspec(
    settings: SandboxSettings,
    name: str = "kernelagent",
    *,
    user: bool = True,
    prefix: str | None = None,
    display_name: str | None = None,
) -> str:
    """Write a kernelspec that runs the kernel in the Docker sandbox; returns its directory."""
    spec = kernel_spec_for(settings)
    data = spec.to_dict()
    data["display_name"] = display_name or SANDBOX_DISPLAY_NAME
    data.setdefault("metadata", {})["kernelagent"] = {"sandbox": "docker", "image": settings.image}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(data, indent=1))
        return KernelSpecManager().install_kernel_spec(
            tmp, kernel_name=name, user=user and prefix is None, prefix=prefix, replace=True
        )


def recorded_kernelspec(settings: SandboxSettings) -> dict[str, str]:
    """The ``metadata.kernelspec`` of a recorded session notebook: the sandbox's kernelspec,
    so "Run All" in JupyterLab runs the agent's code in a sandbox, never on the host.

    Called by ``Session`` when it starts or continues a notebook. When no kernelspec named
    ``kernelagent`` runs in the Docker sandbox, one is installed for this user, as
    ``kernelagent kernelspec install`` does, with the session's image and limits but no
    network allowlist (a kernelspec serves every notebook that names it). If that fails,
    the name is recorded anyway: JupyterLab then asks for a kernel instead of using the host's.
    """
    strict = SandboxSettings(
        kind="docker",
        image=settings.image,
        mem_limit=settings.mem_limit,
        cpus=settings.cpus,
        pids_limit=settings.pids_limit,
        runtime=settings.runtime,
    )
    recorded = {"name": KERNEL_NAME, "display_name": SANDBOX_DISPLAY_NAME, "language": "python"}
    for name in (KERNEL_NAME, _FALLBACK_KERNEL_NAME):
        try:
            spec = KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            spec = None
        except (OSError, ValueError) as error:  # an unreadable kernel.json: not ours to fix
            log.warning("kernelspec %s cannot be read (%s)", name, error)
            continue
        if spec is not None:
            provisioner = (spec.metadata or {}).get("kernel_provisioner", {})
            if provisioner.get("provisioner_name") == "kernelagent-docker":
                return {**recorded, "name": name, "display_name": spec.display_name}
            if name == KERNEL_NAME:
                continue  # someone else's kernelspec has the name: use (or make) the fallback
        try:  # missing, or the fallback name holds something else: (re)install ours
            install_kernelspec(strict, name)
        except OSError as error:
            log.warning("cannot install the sandbox kernelspec %s: %s", name, error)
        return {**recorded, "name": name}
    return {**recorded, "name": _FALLBACK_KERNEL_NAME}
