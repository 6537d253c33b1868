"""Finding the node hosts from a submitter, and choosing one for a session.

Every live node with the ``kernelagent_sandbox`` resource gets a node host
(:class:`~kernelagent.cluster.host.NodeHost`) when a session is first placed: a named,
detached actor pinned to that node (``get_if_exists``, so every submitter finds the
same one). A session goes to the host with the fewest running sessions for its capacity
(the node's ``kernelagent_sandbox``), a resumed one to the node that holds its sandbox
while that node lives. The choice is optimistic: a host admits a session only if its
count is still the one the submitter saw, else the submitter looks again, so sessions
placed at the same moment from many processes still spread.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from kernelagent.cluster.connection import ClusterError
from kernelagent.cluster.placement import (
    HOST_PREFIX,
    NAMESPACE,
    SANDBOX_RESOURCE,
    Placement,
    host_name,
)

HOST_START_SECONDS = 180.0
"""How long a submitter waits for a new node host (a process that imports kernelagent)."""
ADMIT_ROUNDS = 6
"""Optimistic rounds before a host is told to admit whatever its count."""

_remote: Any = None
_hosts: dict[str, Any] = {}
"""Node host handles by name, in this submitter."""


@dataclass
class Admitted:
    host: Any
    node: str
    incarnation: str


def sandbox_nodes() -> list[str]:
    """The live nodes that offer the ``kernelagent_sandbox`` resource."""
    import ray

    return [
        str(node["NodeID"])
        for node in ray.nodes()
        if node.get("Alive") and (node.get("Resources") or {}).get(SANDBOX_RESOURCE, 0) > 0
    ]


def node_alive(node_id: str) -> bool:
    import ray

    return any(node.get("NodeID") == node_id and node.get("Alive") for node in ray.nodes())


def host_for(node_id: str, environment: dict[str, str]) -> Any:
    """The node host of ``node_id`` (started there if it is not running)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    global _remote
    name = host_name(node_id, environment)
    if name in _hosts:
        return _hosts[name]
    if _remote is None:
        import ray

        from kernelagent.cluster.host import NodeHost

        _remote = ray.remote(NodeHost)
    _hosts[name] = _remote.options(
        name=name,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=0,
        max_concurrency=1000,
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(environment)
    return _hosts[name]


def forget_host(node_id: str, environment: dict[str, str]) -> None:
    """The host died: the next placement on that node starts a new one."""
    _hosts.pop(host_name(node_id, environment), None)


async def _loads(hosts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each host's ``load()``; hosts that died or do not start in time are left out."""

    async def one(node: str, host: Any) -> tuple[str, dict[str, Any] | None]:
        try:
            return node, await asyncio.wait_for(host.load.remote(), HOST_START_SECONDS)
        except Exception:  # a dead node's host, or one that cannot start there
            return node, None

    answers = await asyncio.gather(*(one(node, host) for node, host in hosts.items()))
    return {node: load for node, load in answers if load is not None}


def _share(load: dict[str, Any]) -> float:
    return float(load["running"]) / max(1, int(load["capacity"]))


async def place(
    placement: Placement, *, prefer: str | None = None, avoid: frozenset[str] = frozenset()
) -> Admitted:
    """Start ``placement`` on a node host: ``prefer``'s while that node lives, else the
    least loaded one not in ``avoid``."""
    environment = placement.environment
    payload = placement.model_dump(mode="json")
    for attempt in range(ADMIT_ROUNDS + 1):
        nodes = [node for node in sandbox_nodes() if node not in avoid]
        if not nodes:
            raise ClusterError(
                f"no live node of the cluster offers the resource {SANDBOX_RESOURCE} to run "
                f"session {placement.session_id}",
                hint=f"start a worker with `ray start --address HEAD:PORT --resources "
                f"'{{\"{SANDBOX_RESOURCE}\": 4}}'`, then kernelagent resume "
                f"{placement.session_id}",
            )
        hosts = {node: host_for(node, environment) for node in nodes}
        loads = await _loads(hosts)
        for node in set(hosts) - set(loads):
            forget_host(node, environment)
        if not loads:
            raise ClusterError(
                f"no node host answered within {HOST_START_SECONDS:.0f} s on nodes "
                f"{', '.join(node[:12] for node in nodes)}",
                hint="check the workers' logs (ray logs), then try again",
            )
        last = attempt == ADMIT_ROUNDS
        if prefer in loads:
            chosen, expected = prefer, None
        else:
            chosen = min(
                loads,
                key=lambda node: (
                    loads[node]["running"] / loads[node]["capacity"],
                    random.random(),
                ),
            )
            expected = None if last else loads[chosen]["running"]
        try:
            reply = await hosts[chosen].admit.remote(payload, expected)
        except Exception:  # its node died between the two calls: choose again
            forget_host(chosen, environment)
            avoid = avoid | {chosen}
            continue
        if reply.get("error"):
            raise ClusterError(*reply["error"])
        if reply["admitted"]:
            return Admitted(hosts[chosen], chosen, reply["incarnation"])
    raise ClusterError(
        f"session {placement.session_id} could not be placed", hint="try again"
    )  # not reached: the last round admits whatever the count


async def running_on(node_id: str, session_id: str) -> bool:
    """Whether a live node host on ``node_id`` runs ``session_id`` now."""
    import ray

    if not node_alive(node_id):
        return False
    prefix = f"{HOST_PREFIX}{node_id}-"
    for name in ray.util.list_named_actors():
        if isinstance(name, str) and name.startswith(prefix):
            try:
                host = ray.get_actor(name, namespace=NAMESPACE)
                if await asyncio.wait_for(host.runs.remote(session_id), 30):
                    return True
            except Exception:
                continue
    return False
