"""What a REST request may choose, and which API key goes where.

Anyone who can call ``POST /kernelagent/api/sessions`` chooses the session's model
endpoint, sandbox kind and egress. The server's own API key must not follow a request
to an endpoint the request picked, so:

* The server's key (``KernelAgentExtension.api_key``, else ``$OPENAI_API_KEY``) is sent
  only to the server's configured base URL (``default_base_url``, else
  ``$OPENAI_BASE_URL``, else OpenAI's API).
* Any other ``base_url`` must match an entry of ``allowed_base_urls`` (loopback by
  default) and gets the key that entry names: none (a placeholder), ``"server"`` (the
  server's key, for an administrator who says so) or ``"env:NAME"`` (a key of its own).
* ``sandbox: "local"`` (not isolated) only when ``allow_local_sandbox`` is on, or when
  the administrator made it the default.
* ``allow_net`` entries only when ``request_network_allow`` covers them; the server's
  ``network_allow`` applies to every session.

:class:`RequestPolicy` is built by ``KernelAgentExtension`` from its traits and used by
``SessionManager`` when it creates or resumes a session and when it replays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kernelagent.agent.models_factory import LOCAL_PLACEHOLDER_KEY
from kernelagent.errors import KernelAgentError
from kernelagent.sandbox.egress_rules import EgressRuleError, covered_by, parse_rule

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ALLOWED_BASE_URLS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class PolicyError(KernelAgentError):
    """A request asks for something this server does not allow; ``status`` is 400 or 403."""

    def __init__(self, status: int, error: str, hint: str) -> None:
        super().__init__(error, hint)
        self.status, self.error = status, error


@dataclass(frozen=True)
class Endpoint:
    """Where a session's model requests go and the key they carry (never None for a URL
    the request chose, so the SDK cannot fall back to ``$OPENAI_API_KEY``)."""

    base_url: str | None
    api_key: str | None


@dataclass(frozen=True)
class AllowedBaseUrl:
    """One ``allowed_base_urls`` entry: ``scheme://host[:port|:*][/path prefix]``."""

    scheme: str
    host: str
    port: int | None
    """None: any port."""
    path: str
    api_key: str = "none"

    @classmethod
    def parse(cls, entry: str | dict[str, Any]) -> AllowedBaseUrl:
        if isinstance(entry, dict):
            url, api_key = str(entry.get("url", "")), str(entry.get("api_key", "none"))
        else:
            url, api_key = str(entry), "none"
        if api_key not in ("none", "server") and not api_key.startswith("env:"):
            raise ValueError(
                f"allowed_base_urls entry {url!r}: api_key must be none, server or env:NAME"
            )
        any_port = ":*" in url
        parts = urlsplit(url.replace(":*", "", 1))
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(
                f"allowed_base_urls entry {url!r} is not scheme://host[:port|:*][/path], "
                "e.g. http://127.0.0.1:* or https://models.internal/v1"
            )
        port = None if any_port else (parts.port or _DEFAULT_PORTS[parts.scheme])
        return cls(parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/"), api_key)

    def matches(self, url: str) -> bool:
        parts = urlsplit(url)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        path = parts.path.rstrip("/")
        return (
            parts.scheme == self.scheme
            and (parts.hostname or "").lower() == self.host
            and (self.port is None or port == self.port)
            and (path == self.path or path.startswith(self.path + "/"))
        )


@dataclass
class RequestPolicy:
    """The server's answer to what a request may choose; see the module docstring."""

    server_base_url: str | None = None
    server_api_key: str | None = None
    allowed_base_urls: list[AllowedBaseUrl] = field(
        default_factory=lambda: [AllowedBaseUrl.parse(url) for url in DEFAULT_ALLOWED_BASE_URLS]
    )
    allow_local_sandbox: bool = False
    default_sandbox: str = "docker"
    network_allow: list[str] = field(default_factory=list)
    request_network_allow: list[str] = field(default_factory=list)
    network_headers: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        *,
        base_url: str | None,
        api_key: str | None,
        allowed_base_urls: list[Any],
        **options: Any,
    ) -> RequestPolicy:
        """Called by KernelAgentExtension with its traits (URLs and keys from the
        environment when the traits leave them unset); a bad rule fails here, at startup."""
        for rule in [*options.get("network_allow", []), *options.get("request_network_allow", [])]:
            parse_rule(rule)
        return cls(
            server_base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
            server_api_key=api_key or os.environ.get("OPENAI_API_KEY") or None,
            allowed_base_urls=[AllowedBaseUrl.parse(entry) for entry in allowed_base_urls],
            **options,
        )

    # -- the model endpoint --------------------------------------------------------------

    def endpoint(self, requested: str | None) -> Endpoint:
        """The base URL and key for a session that asks for ``requested`` (None: the
        server's own). Raises PolicyError (400) for a URL this server does not allow."""
        own = self.server_base_url or OPENAI_BASE_URL
        if not requested or _same_url(requested, own):
            return Endpoint(requested if requested else self.server_base_url, self.server_api_key)
        parts = urlsplit(requested)
        if parts.username or parts.password or parts.query or parts.fragment:
            raise PolicyError(
                400,
                "base_url must be a plain URL (no user:password@, query or fragment)",
                "give the endpoint only, e.g. http://127.0.0.1:8000/v1",
            )
        for entry in self.allowed_base_urls:
            if entry.matches(requested):
                return Endpoint(requested, self._key_for(entry))
        others = ", ".join(_describe(entry) for entry in self.allowed_base_urls)
        raise PolicyError(
            400,
            f"base_url {requested} is not allowed by this server; its sessions may use "
            f"{own} or {others or 'no other endpoint'}",
            "an administrator can allow it: jupyter lab "
            f"--KernelAgentExtension.allowed_base_urls='[\"{_origin(requested)}\"]' (the server's "
            f"API "
            "key is never sent there unless that entry says api_key: server)",
        )

    def _key_for(self, entry: AllowedBaseUrl) -> str:
        if entry.api_key == "server" and self.server_api_key:
            return self.server_api_key
        if entry.api_key.startswith("env:"):
            return os.environ.get(entry.api_key[4:]) or LOCAL_PLACEHOLDER_KEY
        return LOCAL_PLACEHOLDER_KEY

    # -- the sandbox -----------------------------------------------------------------------

    def check_sandbox(self, kind: str) -> None:
        """Refuse ``local`` (a plain subprocess of the Jupyter server, not isolated) unless
        allowed."""
        if kind == "local" and not (self.allow_local_sandbox or self.default_sandbox == "local"):
            raise PolicyError(
                403,
                "sandbox 'local' runs the agent's code in the Jupyter server's own process "
                "environment, not isolated; this server does not allow it",
                "use sandbox 'docker', or start the server with "
                "--KernelAgentExtension.allow_local_sandbox=True",
            )

    def network_for(self, requested: Any, kind: str = "docker") -> list[str]:
        """The sandbox's egress allowlist: the server's ``network_allow`` plus what the
        request asks for (``allow_net``), each covered by ``request_network_allow``."""
        if requested is None:
            requested = []
        if not isinstance(requested, list) or not all(isinstance(item, str) for item in requested):
            raise PolicyError(
                400, "allow_net must be a list of HOST[:PORT] strings", 'e.g. ["pypi.org:443"]'
            )
        if kind != "docker":
            if requested:
                raise PolicyError(
                    400, "allow_net needs sandbox 'docker'", "the local sandbox is not isolated"
                )
            return []
        try:
            for item in requested:
                parse_rule(item)
            refused = covered_by(requested, self.request_network_allow)
        except EgressRuleError as error:
            raise PolicyError(
                400, str(error), "allow_net entries are HOST[:PORT], e.g. pypi.org:443"
            ) from None
        if refused:
            permitted = ", ".join(self.request_network_allow) or "nothing"
            raise PolicyError(
                403,
                f"allow_net {', '.join(refused)} is beyond what this server lets a request open "
                f"(permitted: {permitted})",
                "an administrator can permit it: "
                f"--KernelAgentExtension.request_network_allow='[\"{refused[0]}\"]'",
            )
        return list(dict.fromkeys([*self.network_allow, *requested]))


def _same_url(first: str, second: str) -> bool:
    return first.rstrip("/") == second.rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _describe(entry: AllowedBaseUrl) -> str:
    host = f"[{entry.host}]" if ":" in entry.host else entry.host
    return f"{entry.scheme}://{host}:{entry.port or '*'}{entry.path}"
