"""What a sandbox is made of: where it runs, its image and its limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kernelagent.execution import DEFAULT_OUTPUT_LIMIT
from kernelagent.sandbox.images import DEFAULT_IMAGE

SandboxKind = Literal["docker", "local"]


class SandboxSettings(BaseModel):
    """Settings for one sandbox. Defaults are the strict ones."""

    kind: SandboxKind = "docker"
    image: str = DEFAULT_IMAGE
    mem_limit: str = Field("1g", description="Memory limit, Docker syntax.")
    cpus: float = Field(1.0, description="CPU limit in cores.")
    pids_limit: int = Field(256, description="Maximum processes and threads.")
    tmpfs_size: str = Field("64m", description="Size of the writable /tmp.")
    network: str = Field("none", description="Docker network mode; 'none' cuts it off.")
    runtime: str = Field("", description="OCI runtime (e.g. 'runsc' for gVisor); empty: default.")
    output_limit: int = Field(DEFAULT_OUTPUT_LIMIT, description="Bytes of output kept per cell.")
    startup_timeout: float = Field(60.0, description="Seconds to wait for the kernel to be ready.")
    interrupt_grace: float = Field(
        5.0, description="Seconds a timed-out cell gets to stop after an interrupt before a restart."
    )

    def provisioner_config(self) -> dict[str, object]:
        return {
            "image": self.image,
            "mem_limit": self.mem_limit,
            "cpus": self.cpus,
            "pids_limit": self.pids_limit,
            "tmpfs_size": self.tmpfs_size,
            "network": self.network,
            "runtime": self.runtime,
        }
