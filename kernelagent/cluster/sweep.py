"""Sandboxes a dead node left behind on this machine, judged by the store.

A session's sandbox lives in the Docker engine of the node that started it. When that
node dies the store still names the session's node (and, for a session that waited for
approval, its sandbox); the session goes on elsewhere, or waits, and the container stays
on the machine (a Ray node that died with its machine still up, or an engine whose
containers came back). When a node host starts on a machine (:mod:`.host`), and when a
person runs ``kernelagent cleanup`` with ``$KERNELAGENT_CLUSTER`` set, a kernelagent
container here is removed when

* the session whose sandbox it is (the store's ``sandbox_state``) is not placed on a live
  Ray node of this machine: its node is gone, or the session moved to another machine;
* it is an earlier sandbox of a cluster session (its workspace label names exactly one
  session) that is now placed on no live node of this machine;
* or it is an orphan as ``kernelagent cleanup`` always judged: stopped, or its owner
  process on this machine is gone, and no waiting session keeps it.

A node host removes only the containers of its own store's sessions (one Docker engine
may serve other stores and local sessions, which it cannot judge); ``kernelagent
cleanup`` removes every orphan it finds, as without a cluster.

A session being placed here claims this node in the store before its sandbox starts, so
a sweep never takes a new sandbox for a stale one. Removing a session's recorded sandbox
clears it from the store: a later resume replays into a fresh one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping

from kernelagent.sandbox.docker_provisioner import LABEL_KERNEL_ID, LABEL_WORKSPACE
from kernelagent.sandbox.maintenance import SandboxContainer, list_sandboxes, remove_sandboxes
from kernelagent.session.store import SessionRecord, SessionStore

FINISHED = ("completed", "failed")


def live_nodes_here() -> set[str]:
    """The Ray node ids alive on this machine (the driver must have joined the cluster)."""
    import ray

    here = socket.gethostname()
    return {
        str(node["NodeID"])
        for node in ray.nodes()
        if node.get("Alive") and node.get("NodeManagerHostname") == here
    }


class ClusterVerdicts:
    """The store's view of the containers on this machine, taken once."""

    def __init__(self, records: list[SessionRecord], live_here: set[str]) -> None:
        self.live_here = live_here
        self.by_kernel: dict[str, SessionRecord] = {}
        self.recorded: set[str] = set()
        """Kernel ids of every sandbox a record names, finished sessions' too."""
        by_workspace: dict[str, list[SessionRecord]] = {}
        for record in records:
            kernel_id = _kernel_id(record)
            if kernel_id:
                self.recorded.add(kernel_id)
                if record.status not in FINISHED:
                    self.by_kernel[kernel_id] = record
            by_workspace.setdefault(str(record.workspace), []).append(record)
        self.by_workspace = {
            path: found[0] for path, found in by_workspace.items() if len(found) == 1
        }

    def keep(self) -> frozenset[str]:
        """Sandboxes that a session here (or off the cluster) will re-attach to."""
        return frozenset(
            kernel_id
            for kernel_id, record in self.by_kernel.items()
            if record.node is None or record.node in self.live_here
        )

    def ours(self, container: SandboxContainer) -> bool:
        """Whether the container belongs to a session of this store: its recorded sandbox,
        or an earlier one in its workspace."""
        return container.kernel_id in self.recorded or container.workspace in self.by_workspace

    def stale(self, labels: Mapping[str, str]) -> str | None:
        record = self.by_kernel.get(labels.get(LABEL_KERNEL_ID, ""))
        if record is not None:
            return self._gone(record, "its session")
        record = self.by_workspace.get(labels.get(LABEL_WORKSPACE, ""))
        if record is not None:
            return self._gone(record, "an earlier sandbox of session")
        return None

    def _gone(self, record: SessionRecord, what: str) -> str | None:
        if record.node is None or record.node in self.live_here:
            return None
        return f"{what} {record.id} is placed on node {record.node[:12]}, not a live node here"


def stale_sandboxes(
    store: SessionStore, live_here: set[str], *, only_ours: bool = False
) -> list[SandboxContainer]:
    """Every kernelagent container on this machine, judged with the cluster's store
    (``only_ours``: only those of this store's sessions)."""
    verdicts = ClusterVerdicts(store.list(), live_here)
    found = list_sandboxes(keep_kernel_ids=verdicts.keep(), stale=verdicts.stale)
    return [container for container in found if verdicts.ours(container)] if only_ours else found


def remove_stale(store: SessionStore, targets: list[SandboxContainer]) -> int:
    """Remove ``targets``; sessions whose recorded sandbox went with them forget it."""
    removed = remove_sandboxes(targets)
    gone = {target.kernel_id for target in targets}
    for record in store.sessions_with_live_sandboxes():
        kernel_id = _kernel_id(record)
        if kernel_id in gone:
            store.update_if(record.id, _names(kernel_id), sandbox_state=None)
    return removed


def _kernel_id(record: SessionRecord) -> str | None:
    return (record.sandbox_state or {}).get("kernel_id")


def _names(kernel_id: str) -> Callable[[SessionRecord], bool]:
    """Whether a record still names the sandbox ``kernel_id``."""
    return lambda record: _kernel_id(record) == kernel_id


def sweep_here(store: SessionStore | None = None) -> list[str]:
    """What a node host does when it starts: remove the stale sandboxes of its store's
    sessions here (other stores' and local sessions' containers on a shared engine are not
    its to judge); returns their container names."""
    store = store or SessionStore()
    found = stale_sandboxes(store, live_nodes_here(), only_ours=True)
    targets = [container for container in found if container.orphan]
    remove_stale(store, targets)
    return [target.name for target in targets]
