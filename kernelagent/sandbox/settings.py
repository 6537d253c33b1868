"""What a sandbox is made of: where it runs, its image and its limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from kernelagent.execution import DEFAULT_OUTPUT_LIMIT
from kernelagent.sandbox.egress_rules import parse_rule
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
    network_allow: list[str] = Field(
        default_factory=list,
        description="Destinations (HOST[:PORT]) reachable through the host's audited egress "
        "proxy (--allow-net); the container still has no network interface.",
    )
    network_headers: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Secret headers the proxy adds to plain-HTTP requests per destination rule; "
        "${NAME} is taken from the host's environment when the proxy starts (never recorded).",
    )
    egress_log: str = Field("", description="JSON-lines egress audit log on the host; empty: default.")
    runtime: str = Field("", description="OCI runtime (e.g. 'runsc' for gVisor); empty: default.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on the sandbox's container (e.g. who made it)."
    )
    output_limit: int = Field(DEFAULT_OUTPUT_LIMIT, description="Bytes of output kept per cell.")
    startup_timeout: float = Field(60.0, description="Seconds to wait for the kernel to be ready.")
    interrupt_grace: float = Field(
        5.0, description="Seconds a timed-out cell gets to stop after an interrupt before a restart."
    )

    @field_validator("network_allow")
    @classmethod
    def _rules_parse(cls, rules: list[str]) -> list[str]:
        return [parse_rule(rule).text for rule in rules]

    @model_validator(mode="after")
    def _egress_needs_docker(self) -> SandboxSettings:
        if self.network_allow and self.kind != "docker":
            raise ValueError(
                "network_allow (--allow-net) needs the Docker sandbox: the local sandbox is not "
                "isolated and already has the host's network"
            )
        return self

    def allowing(self, rules: list[str]) -> SandboxSettings:
        """A copy that may also reach ``rules`` (``--allow-net``); raises ValueError saying
        what is wrong with a rule. Called by the CLI and the server as they build a session."""
        if not rules:
            return self
        merged = list(dict.fromkeys([*self.network_allow, *rules]))
        try:
            return SandboxSettings.model_validate({**self.model_dump(), "network_allow": merged})
        except ValidationError as error:
            raise ValueError(str(error.errors()[0]["msg"]).removeprefix("Value error, ")) from None

    def provisioner_config(self) -> dict[str, object]:
        return {
            "image": self.image,
            "mem_limit": self.mem_limit,
            "cpus": self.cpus,
            "pids_limit": self.pids_limit,
            "tmpfs_size": self.tmpfs_size,
            "network": self.network,
            "runtime": self.runtime,
            "network_allow": list(self.network_allow),
            "network_headers": {rule: dict(h) for rule, h in self.network_headers.items()},
            "egress_log": self.egress_log,
            "extra_labels": dict(self.labels),
        }
