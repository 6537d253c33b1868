"""How a container with an egress allowlist is put together (used by DockerProvisioner).

The container keeps ``network_mode="none"``. Its runtime directory gets a second,
host-owned part, ``e/``, mounted **read-only** at ``/run/kernelagent-egress``: the host
proxy's unix socket and a copy of ``egress_forwarder.py``. The kernel command is
wrapped so that the forwarder binds ``127.0.0.1:PORT`` first, and the environment
points ``HTTP(S)_PROXY`` and pip at it.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

from kernelagent.errors import KernelAgentError
from kernelagent.sandbox.egress_rules import Allowlist

CONTAINER_EGRESS_DIR = "/run/kernelagent-egress"
SOCKET_NAME = "proxy.sock"
FORWARDER_NAME = "forwarder.py"
DEFAULT_EGRESS_PORT = 3128
_FORWARDER_SOURCE = Path(__file__).with_name("egress_forwarder.py")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class EgressConfigError(KernelAgentError, ValueError):
    """Egress settings that cannot work; the message says which setting to change."""


def egress_dir(runtime_dir: Path) -> Path:
    """The host-owned part of a kernel's runtime directory the sandbox sees read-only."""
    return runtime_dir / "e"


def socket_path(runtime_dir: Path) -> Path:
    return egress_dir(runtime_dir) / SOCKET_NAME


def prepare_egress_dir(runtime_dir: Path) -> Path:
    """Create ``e/`` (owned by the host user, 0755) with a fresh copy of the forwarder."""
    directory = egress_dir(runtime_dir)
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    directory.mkdir(mode=0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    target = directory / FORWARDER_NAME
    temporary = directory / (FORWARDER_NAME + ".tmp")
    shutil.copyfile(_FORWARDER_SOURCE, temporary)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return directory


def wrap_command(cmd: list[str], port: int) -> list[str]:
    """The kernel command, started by the forwarder once it listens on ``port``."""
    return [
        "python3",
        f"{CONTAINER_EGRESS_DIR}/{FORWARDER_NAME}",
        f"{CONTAINER_EGRESS_DIR}/{SOCKET_NAME}",
        str(port),
        "--",
        *cmd,
    ]


def container_environment(allowlist: Allowlist, port: int) -> dict[str, str]:
    """Proxy variables (both spellings) and pip settings for the sandbox.

    ``NO_PROXY`` keeps the sandbox's own loopback direct, unless a rule allows a loopback
    destination on the host: then ``127.0.0.1`` must go through the proxy too.
    """
    proxy = f"http://127.0.0.1:{port}"
    host_loopback = any(
        rule.host == "localhost"
        or (rule.network is not None and rule.network.network_address.is_loopback)
        for rule in allowlist.rules
    )
    no_proxy = "" if host_loopback else ",".join(_LOOPBACK_NAMES)
    environment = {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "PIP_PROXY": proxy,
        "PIP_USER": "1",
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "KERNELAGENT_EGRESS_ALLOW": allowlist.describe(),
    }
    return environment


def expand_headers(templates: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Secret headers with ``${NAME}`` taken from the host's environment (the values never
    enter the sandbox or the recorded settings, only the templates do)."""
    expanded: dict[str, dict[str, str]] = {}
    for rule, headers in templates.items():
        expanded[rule] = {}
        for name, template in headers.items():
            try:
                expanded[rule][name] = string.Template(template).substitute(os.environ)
            except KeyError as missing:
                raise EgressConfigError(
                    f"the {name} header for {rule} uses ${{{missing.args[0]}}}, which is not set "
                    f"in "
                    "the environment of the process that starts the kernel: export it there"
                ) from None
            except ValueError as error:
                raise EgressConfigError(f"the {name} header for {rule}: {error}") from None
            if any(ch in name + expanded[rule][name] for ch in "\r\n\0") or ":" in name:
                raise EgressConfigError(
                    f"the {name!r} header for {rule} has a line break or a colon in its name or "
                    f"value"
                )
    return expanded


def check_settings(rules: list[str], network: str) -> Allowlist:
    """The parsed allowlist; refuses combinations that would not be audited egress."""
    allowlist = Allowlist(rules)
    if network != "none":
        raise EgressConfigError(
            f"network_allow needs network='none' (it is {network!r}): the allowlist works by "
            "giving the container no interface and a proxy as its only way out"
        )
    for rule in allowlist.rules:
        if rule.network is not None and rule.network.prefixlen == 0:
            raise EgressConfigError(
                f"--allow-net {rule.text} allows every address: name the destinations instead"
            )
    return allowlist


def default_log_path(kernel_id: str) -> Path:
    """Where a kernel's egress audit goes when its settings name no file (host-only)."""
    return Path(jupyter_data_dir()) / "kernelagent" / "egress" / f"{kernel_id}.jsonl"
