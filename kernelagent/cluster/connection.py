"""Joining a Ray cluster as a driver, with an error that says what to fix."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from kernelagent.cluster.placement import CLUSTER_VARIABLE, SANDBOX_RESOURCE
from kernelagent.errors import KernelAgentError

CONNECT_TIMEOUT = 5.0
LOOPBACK = ("127.0.0.1", "localhost")
LOOPBACK_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""0: Ray keeps 127.0.0.1 as it is (DESIGN.md: every Ray process on loopback)."""


class ClusterError(KernelAgentError, RuntimeError):
    """The cluster cannot be reached or cannot run the session; nothing was placed."""


def connect(address: str, *, sessions: bool = True) -> None:
    """Join the cluster at ``address`` (once per process) and check that a node can run
    sessions (unless ``sessions`` is False: for tools that only look at the cluster)."""
    loopback = _host(address) in LOOPBACK
    if loopback:  # Ray would resolve 127.0.0.1 to the machine's other address without it
        os.environ.setdefault(LOOPBACK_SETTING, "0")
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise ClusterError(
            f"${CLUSTER_VARIABLE} is set but Ray is not installed",
            hint="pip install 'kernelagent[ray]', or unset KERNELAGENT_CLUSTER to run here",
        ) from None
    if loopback and ray_constants.ENABLE_RAY_CLUSTER:
        raise ClusterError(
            f"the cluster at {address} is on loopback, but this process imported Ray before "
            f"{LOOPBACK_SETTING}=0 was set: it would reach the cluster at another address",
            hint=f"set {LOOPBACK_SETTING}=0 in this process's environment",
        )
    if not ray.is_initialized():
        host = _check_reachable(address)
        _cluster_messages_to_stderr()
        try:
            ray.init(
                address=address,
                namespace="kernelagent",
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
                _node_ip_address="127.0.0.1" if host in LOOPBACK else None,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ClusterError(
                f"cannot join the Ray cluster at {address}: {_one_line(error)}", hint=_hint()
            ) from None
    if sessions and ray.cluster_resources().get(SANDBOX_RESOURCE, 0) <= 0:
        raise ClusterError(
            f"no node of the Ray cluster at {address} offers the resource {SANDBOX_RESOURCE}, "
            "so no session can be placed",
            hint=f"start workers that have Docker and the sandbox image with "
            f"`ray start --address {address} --resources '{{\"{SANDBOX_RESOURCE}\": 4}}'`",
        )


def _cluster_messages_to_stderr() -> None:
    """Ray's driver prints the cluster's error messages (a node marked dead, a retried
    call) on stdout, where ``--json`` keeps its summary: send them to stderr."""
    import ray._private.worker as driver

    original = getattr(driver, "print_to_stdstream", None)
    if original is None or getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    driver.print_to_stdstream = to_stderr


def _host(address: str) -> str:
    return address.removeprefix("ray://").rpartition(":")[0]


def _check_reachable(address: str) -> str:
    """Fail in seconds, not after Ray's own long retries, when nothing listens there."""
    if address == "auto":
        return ""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"the cluster address {address!r} is not HOST:PORT", hint=_hint())
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {error.strerror or error}", hint=_hint()
        ) from None
    return host


def _hint() -> str:
    return (
        f"check ${CLUSTER_VARIABLE} (or --cluster): the head node's HOST:PORT "
        "(`ray start --head` prints it); unset it to run here"
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
