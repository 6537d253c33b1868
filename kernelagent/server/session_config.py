"""A session's configuration from a create request, the server's defaults and its policy."""

from __future__ import annotations

from dataclasses import dataclass

from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.api import build_config
from kernelagent.errors import InvalidRequestError
from kernelagent.literals import ApiKind, SandboxKind
from kernelagent.localmodel import recommended_api
from kernelagent.server.request_policy import RequestPolicy
from kernelagent.server.requests import CreateSessionRequest
from kernelagent.session.session import SessionConfig


@dataclass
class Defaults:
    """What a new session uses when the request does not say."""

    model: str
    base_url: str | None = None
    api: ApiKind = "responses"
    sandbox: SandboxKind = "docker"
    max_steps: int = 30
    attempts: int = 1
    cell_timeout: float = 300.0


def session_config(
    request: CreateSessionRequest, defaults: Defaults, policy: RequestPolicy
) -> SessionConfig:
    """The configuration of the session ``request`` asks for; PolicyError if not allowed."""
    sandbox = request.sandbox or defaults.sandbox
    policy.check_sandbox(sandbox)
    network_allow = policy.network_for(request.allow_net, sandbox)
    model = request.model or defaults.model
    base_url = policy.endpoint(request.base_url).base_url or defaults.base_url
    config = build_config(
        model=model,
        api=request.api or defaults.api,
        base_url=base_url,
        sandbox=sandbox,
        max_steps=request.max_steps or defaults.max_steps,
        cell_timeout=defaults.cell_timeout,
        attempts=request.attempts or defaults.attempts,
    )
    config.approval = ApprovalPolicy(mode=request.approve or "never")
    if request.agent_memory is not None:
        config.agent_memory = request.agent_memory
    try:
        config.sandbox = config.sandbox.allowing(network_allow)
    except ValueError as error:
        raise InvalidRequestError(str(error), hint="allow_net entries are HOST[:PORT]") from None
    if config.sandbox.network_allow:
        config.sandbox.network_headers = dict(policy.network_headers)
    if base_url is None and (model == "local" or model.startswith("local:")):
        config.local_model = model.removeprefix("local").removeprefix(":")  # "" = the default
        config.api = request.api or recommended_api(config.local_model or None)
    return config
