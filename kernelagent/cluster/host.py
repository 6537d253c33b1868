"""The node host: one long-lived async Ray actor per node that has the
``kernelagent_sandbox`` resource, running that node's placed sessions concurrently in
its one event loop (Ray, kernelagent's session stack and the model client are imported
once per node, not once per session).

Started on first use by a submitter (:mod:`.hosts`), named after its node and the
submitters' environment, detached (it outlives the submitter: a session goes on when the
process that placed it is gone), never restarted by Ray: a dead node host is simply
gone, and its sessions are placed again by whoever follows them (:mod:`.submit`).

When it starts it removes the sandboxes on this machine that the store says are no
longer any live session's here (:mod:`.sweep`): what a dead node left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray

from kernelagent.cluster.placed import PlacedSession
from kernelagent.cluster.placement import SANDBOX_RESOURCE, Placement

log = logging.getLogger(__name__)

KEEP_FINISHED_SECONDS = 600.0
"""How long a finished session's events wait for a submitter that never came back."""


class NodeHost:
    """Admits placements (:meth:`admit`) and hands out their events (:meth:`follow`)."""

    def __init__(self, environment: dict[str, str]) -> None:
        os.environ.update(environment)
        self.node = ray.get_runtime_context().get_node_id()
        self.capacity = max(1, int(_node_resources(self.node).get(SANDBOX_RESOURCE, 1)))
        """How many sessions run at once here (the node's ``kernelagent_sandbox``)."""
        self.sessions: dict[str, PlacedSession] = {}
        self.slots: asyncio.Semaphore | None = None
        self.sweep: asyncio.Task[list[str]] | None = None

    def _begin(self) -> asyncio.Semaphore:
        """In the actor's event loop, on the first call."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.capacity)
            self.sweep = asyncio.get_running_loop().create_task(self._sweep())
        return self.slots

    async def _sweep(self) -> list[str]:
        from kernelagent.cluster.sweep import sweep_here

        try:
            return await asyncio.to_thread(sweep_here)
        except Exception as error:  # a sweep that fails must not stop the node's sessions
            log.warning("node host %s: the sandbox sweep failed: %s", self.node, error)
            return []

    def _running(self) -> int:
        self._prune()
        return sum(1 for placed in self.sessions.values() if not placed.done)

    def _prune(self) -> None:
        now = time.monotonic()
        for session_id, placed in list(self.sessions.items()):
            if placed.finished_at is not None and now - placed.finished_at > KEEP_FINISHED_SECONDS:
                del self.sessions[session_id]

    async def load(self) -> dict[str, Any]:
        """What a submitter compares node hosts by."""
        self._begin()
        return {"node": self.node, "running": self._running(), "capacity": self.capacity}

    async def admit(self, placement: dict[str, Any], expected: int | None) -> dict[str, Any]:
        """Start ``placement`` here, unless ``expected`` (the number of running sessions
        the submitter saw) is no longer true: then it chooses again, so submitters that
        decide at the same moment do not all pick the same node."""
        slots = self._begin()
        running = self._running()
        if expected is not None and running != expected:
            return {"admitted": False, "running": running, "capacity": self.capacity}
        wanted = Placement.model_validate(placement)
        current = self.sessions.get(wanted.session_id)
        if current is not None and not current.done:
            return {
                "admitted": False,
                "error": (
                    f"session {wanted.session_id} is running on node {self.node} already",
                    "wait until it stops (kernelagent sessions), then resume it",
                ),
            }
        placed = PlacedSession(wanted, self.node)
        self.sessions[wanted.session_id] = placed
        placed.start(slots)
        return {"admitted": True, "incarnation": placed.incarnation, "node": self.node}

    async def follow(
        self, session_id: str, cursor: int, incarnation: str, wait: float = 2.0
    ) -> dict[str, Any]:
        """The events of ``session_id``'s attempt ``incarnation`` after ``cursor``."""
        placed = self.sessions.get(session_id)
        if placed is None or placed.incarnation != incarnation:
            return {"gone": True, "node": self.node}
        return await placed.follow(cursor, wait)

    async def runs(self, session_id: str) -> bool:
        """Whether ``session_id`` is at work here now."""
        placed = self.sessions.get(session_id)
        return placed is not None and not placed.done

    async def cancel(self, session_id: str) -> None:
        placed = self.sessions.get(session_id)
        if placed is not None:
            placed.cancel()

    async def forget(self, session_id: str, incarnation: str) -> None:
        """The submitter has the result: drop the events."""
        placed = self.sessions.get(session_id)
        if placed is not None and placed.incarnation == incarnation and placed.done:
            del self.sessions[session_id]

    async def swept(self) -> list[str]:
        """The containers this node host's sweep removed when it started."""
        self._begin()
        assert self.sweep is not None
        return list(await asyncio.shield(self.sweep))


def _node_resources(node_id: str) -> dict[str, float]:
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return dict(node.get("Resources") or {})
    return {}
