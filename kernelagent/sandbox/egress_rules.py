"""The egress allowlist: which destinations a sandbox may reach through its proxy.

A rule is ``HOST[:PORT]`` as given to ``--allow-net`` (or ``SandboxSettings.network_allow``):

=========================  =================================================================
``pypi.org``               that name on ports 80 and 443
``pypi.org:443``           that name on port 443
``*.pythonhosted.org``     any subdomain (not the name itself) on ports 80 and 443
``api.internal:*``         any port
``127.0.0.1:8080``         an IP literal (``[::1]:8080`` for IPv6)
``10.0.0.0/8:5432``        a network (``[fd00::/8]:443`` for IPv6)
=========================  =================================================================

A destination the sandbox names is allowed when a rule matches it; a name is then
resolved **on the host** and every address must be acceptable: public addresses are,
others (loopback, private, link-local, ...) only when an IP/network rule covers them or
the matching rule names that exact host (not a wildcard) and the address is not
link-local or unspecified. So ``*.example.com`` cannot be pointed at the host's
127.0.0.1 or a cloud metadata address by whoever controls that zone's DNS.

Used by :class:`kernelagent.sandbox.egress_proxy.EgressProxy` (to decide each request),
by ``SandboxSettings`` (to validate rules early) and by the server (to check that a
request asks only for what the administrator permits, :func:`covered_by`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from kernelagent.errors import KernelAgentError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = frozenset({80, 443})
ANY_PORT = "*"
_NAME = re.compile(
    r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$"
)


class EgressRuleError(KernelAgentError, ValueError):
    """A rule that cannot be parsed; the message shows the accepted forms."""


@dataclass(frozen=True)
class EgressRule:
    """One parsed allowlist entry. ``ports`` is None for any port."""

    text: str
    host: str = ""
    """A lower-case name, or ``*.suffix`` for subdomains; empty for IP rules."""
    network: IPNetwork | None = None
    ports: frozenset[int] | None = DEFAULT_PORTS

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")

    def allows_port(self, port: int) -> bool:
        return self.ports is None or port in self.ports

    def matches_name(self, name: str) -> bool:
        """Whether this (name) rule matches a destination name the sandbox asked for."""
        if not self.host:
            return False
        if self.is_wildcard:
            return name.endswith(self.host[1:]) and len(name) > len(self.host) - 1
        return name == self.host

    def covers_address(self, address: IPAddress) -> bool:
        return (
            self.network is not None
            and address.version == self.network.version
            and address in self.network
        )

    def covers(self, other: EgressRule) -> bool:
        """Whether every destination ``other`` allows is also allowed by this rule."""
        if self.ports is not None and (other.ports is None or not other.ports <= self.ports):
            return False
        if other.network is not None:
            return (
                self.network is not None
                and other.network.version == self.network.version
                and other.network.subnet_of(self.network)  # type: ignore[arg-type]
            )
        if not self.host:
            return False
        if other.is_wildcard:
            return self.is_wildcard and other.host.endswith(self.host[1:])
        return self.matches_name(other.host)

    def __str__(self) -> str:
        return self.text


def parse_rule(text: str) -> EgressRule:
    """Parse ``HOST[:PORT]`` (see the module docstring) or raise EgressRuleError."""
    raw = text.strip()
    if not raw:
        raise EgressRuleError("an empty --allow-net rule: use HOST[:PORT], e.g. pypi.org:443")
    if "://" in raw or "/" in raw.split("]")[-1].partition(":")[2]:
        scheme, _, rest = raw.partition("://")
        example = rest.split("/")[0] or "pypi.org"
        raise EgressRuleError(
            f"--allow-net {text!r} is a URL: it takes HOST[:PORT], e.g. --allow-net {example}"
            + (":443" if scheme == "https" and ":" not in example else "")
        )
    host, ports = _split_port(raw)
    network = _parse_network(host)
    if network is not None:
        return EgressRule(text=raw, network=network, ports=ports)
    name = host.lower().rstrip(".")
    if not _NAME.match(name) or name in ("*", "") or name.replace(".", "").isdigit():
        raise EgressRuleError(
            f"--allow-net {text!r} is not HOST[:PORT]: use a name (pypi.org), a wildcard "
            "(*.pythonhosted.org), an IP (127.0.0.1, [::1]) or a network (10.0.0.0/8), "
            "optionally with :PORT or :*"
        )
    return EgressRule(text=raw, host=name, ports=ports)


def parse_rules(texts: Iterable[str]) -> tuple[EgressRule, ...]:
    return tuple(parse_rule(text) for text in texts)


def _split_port(raw: str) -> tuple[str, frozenset[int] | None]:
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise EgressRuleError(f"--allow-net {raw!r}: an IPv6 address needs a closing ']'")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest and not rest.startswith(":"):
            raise EgressRuleError(f"--allow-net {raw!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif raw.count(":") > 1:
        raise EgressRuleError(
            f"--allow-net {raw!r}: write IPv6 addresses in brackets, e.g. [::1]:8080"
        )
    else:
        host, _, port_text = raw.partition(":")
        port_text = port_text if ":" in raw else None
    if port_text is None:
        return host, DEFAULT_PORTS
    if port_text == ANY_PORT:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise EgressRuleError(f"--allow-net {raw!r}: the port must be 1-65535 or *")
    return host, frozenset({int(port_text)})


def _parse_network(host: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        return None


def parse_address(host: str) -> IPAddress | None:
    """The IP address a destination names literally (``[::1]`` too), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """Routable on the internet: not loopback, private, link-local, multicast, reserved."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


def never_by_name(address: IPAddress) -> bool:
    """Addresses a name rule never reaches (cloud metadata lives at link-local addresses)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_link_local or address.is_unspecified or address.is_multicast


def covered_by(requested: list[str], permitted: list[str]) -> list[str]:
    """The requested rules that no permitted rule covers (empty: all are permitted)."""
    limits = parse_rules(permitted)
    return [
        text for text in requested if not any(limit.covers(parse_rule(text)) for limit in limits)
    ]


@dataclass(frozen=True)
class EgressDecision:
    """What the proxy does with one request: connect to ``address``, or refuse with ``reason``."""

    allowed: bool
    reason: str = ""
    """Why a request was refused, worded for the model that reads the 403."""
    address: str | None = None
    """The resolved address the proxy connects to (pinned: no second lookup)."""
    rule: str | None = None


Resolver = Callable[[str, int], Awaitable[list[str]]]


class Allowlist:
    """The rules of one sandbox, and the decision for each destination it asks for."""

    def __init__(self, rules: Iterable[str | EgressRule]) -> None:
        self.rules: tuple[EgressRule, ...] = tuple(
            rule if isinstance(rule, EgressRule) else parse_rule(rule) for rule in rules
        )

    def describe(self) -> str:
        return ", ".join(rule.text for rule in self.rules) or "nothing"

    def _refuse(self, host: str, port: int, why: str) -> EgressDecision:
        return EgressDecision(
            False,
            f"{why}. This sandbox may reach only: {self.describe()}. To allow it, the user must "
            f"add --allow-net {_display(host)}:{port} (or the sandbox's network_allow setting).",
        )

    async def decide(self, host: str, port: int, resolve: Resolver) -> EgressDecision:
        """Decide a request for ``host:port``; names are resolved with ``resolve`` (on the host)."""
        name = host.lower().rstrip(".").strip("[]")
        literal = parse_address(name)
        if literal is not None:
            for rule in self.rules:
                if rule.allows_port(port) and rule.covers_address(literal):
                    return EgressDecision(True, address=str(literal), rule=rule.text)
            return self._refuse(
                host, port, f"{_display(host)}:{port} is not in the egress allowlist"
            )
        matching = [
            rule for rule in self.rules if rule.allows_port(port) and rule.matches_name(name)
        ]
        if not matching:
            return self._refuse(host, port, f"{host}:{port} is not in the egress allowlist")
        try:
            addresses = await resolve(name, port)
        except OSError as error:
            return EgressDecision(False, f"{host} does not resolve on the host ({error})")
        exact = any(not rule.is_wildcard for rule in matching)
        refused: list[str] = []
        for text in addresses:
            address = parse_address(text)
            if address is None:
                continue
            covering = next(
                (r for r in self.rules if r.allows_port(port) and r.covers_address(address)), None
            )
            if covering is not None:
                return EgressDecision(True, address=text, rule=covering.text)
            if is_public(address) or (exact and not never_by_name(address)):
                return EgressDecision(True, address=text, rule=matching[0].text)
            refused.append(text)
        if not refused:
            return EgressDecision(False, f"{host} has no address on the host")
        return self._refuse(
            host,
            port,
            f"{host} resolves to {', '.join(refused)}, a non-public address that only an IP rule "
            f"may allow (e.g. --allow-net {_display(refused[0])}:{port})",
        )


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
