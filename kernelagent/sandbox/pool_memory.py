"""How much memory a container uses: cgroup usage minus the page cache it could drop."""

from __future__ import annotations

from pathlib import Path

import docker.errors

from kernelagent.sandbox.docker_provisioner import docker_client

_CGROUP = Path("/sys/fs/cgroup")


def container_memory_bytes(container_id: str) -> int | None:
    """Resident memory of the container (anonymous + active file pages), from its cgroup
    (v1 or v2, cgroupfs or systemd driver), else from ``docker stats`` (slower); None if
    the container is gone."""
    for directory in (
        _CGROUP / "memory" / "docker" / container_id,
        _CGROUP / "docker" / container_id,
        _CGROUP / "system.slice" / f"docker-{container_id}.scope",
    ):
        usage = _cgroup_usage(directory)
        if usage is not None:
            return usage
    return _stats_usage(container_id)


def _cgroup_usage(directory: Path) -> int | None:
    for usage_file in ("memory.usage_in_bytes", "memory.current"):
        try:
            usage = int((directory / usage_file).read_text())
        except (OSError, ValueError):
            continue
        return usage - _inactive_file(directory)
    return None


def _inactive_file(directory: Path) -> int:
    try:
        lines = (directory / "memory.stat").read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split(maxsplit=1) for line in lines if " " in line)
    for name in ("total_inactive_file", "inactive_file"):
        if name in values:
            return int(values[name])
    return 0


def _stats_usage(container_id: str) -> int | None:
    try:
        stats = docker_client().containers.get(container_id).stats(stream=False)
    except (docker.errors.NotFound, docker.errors.APIError):
        return None
    memory = stats.get("memory_stats", {})
    if "usage" not in memory:
        return None
    details = memory.get("stats", {})
    return int(memory["usage"]) - int(
        details.get("total_inactive_file", details.get("inactive_file", 0))
    )
