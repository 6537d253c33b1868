"""What a sandbox is made of: where it runs, its image and its limits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from kernelagent.execution.limits import DEFAULT_OUTPUT_LIMIT
from kernelagent.literals import SandboxKind
from kernelagent.sandbox.egress_rules import parse_rule
from kernelagent.sandbox.images import DEFAULT_IMAGE

PROVISIONER_FIELDS = (
    "image",
    "mem_limit",
    "cpus",
    "pids_limit",
    "tmpfs_size",
    "network",
    "runtime",
    "network_allow",
    "network_headers",
    "egress_log",
)
"""The settings the Docker provisioner takes as traits (its kernelspec ``config``)."""


class SandboxSettings(BaseModel):
    """Settings for one sandbox. Defaults are the strict ones."""

    kind: SandboxKind = "docker"
    image: str = Field(DEFAULT_IMAGE, description="Sandbox image to run.")
    mem_limit: str = Field("1g", description="Memory limit (Docker syntax, e.g. 1g).")
    cpus: float = Field(1.0, description="CPU limit in cores.")
    pids_limit: int = Field(256, description="Maximum number of processes and threads.")
    tmpfs_size: str = Field("64m", description="Size of the writable /tmp tmpfs.")
    network: str = Field("none", description="Docker network mode. 'none' cuts the sandbox off.")
    network_allow: list[str] = Field(
        default_factory=list,
        description="Destinations (HOST[:PORT]) the sandbox may reach through the host's "
        "audited egress proxy (--allow-net); the container still has no network interface. "
        "Empty: no egress at all.",
    )
    network_headers: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Secret headers the egress proxy adds to plain-HTTP requests, by destination "
        'rule: {"api.internal:8080": {"Authorization": "Bearer ${TOKEN}"}}; ${NAME} comes from '
        "the host's environment when the proxy starts and never enters the sandbox.",
    )
    egress_log: str = Field(
        "",
        description="JSON-lines audit log of every egress request on the host. Empty: "
        "<jupyter data dir>/kernelagent/egress/<kernel id>.jsonl.",
    )
    runtime: str = Field(
        "", description="OCI runtime, e.g. 'runsc' for gVisor. Empty: Docker's default."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the sandbox's container (e.g. who made it).",
    )
    output_limit: int = Field(DEFAULT_OUTPUT_LIMIT, description="Bytes of output kept per cell.")
    startup_timeout: float = Field(60.0, description="Seconds to wait for the kernel to be ready.")
    interrupt_grace: float = Field(
        5.0,
        description="Seconds a timed-out cell gets to stop after an interrupt before a restart.",
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
        """The Docker provisioner's traits for these settings (copies, not references)."""
        return {
            **self.model_dump(include=set(PROVISIONER_FIELDS)),
            "extra_labels": dict(self.labels),
        }


def setting_default(name: str) -> Any:
    """The default of setting ``name``, for a trait that mirrors it."""
    field = SandboxSettings.model_fields[name]
    return field.get_default(call_default_factory=True)


def setting_help(name: str) -> str:
    return SandboxSettings.model_fields[name].description or ""
