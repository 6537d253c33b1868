"""Placing a session on the cluster and following it from the submitting process.

The submitter creates a :class:`~kernelagent.cluster.actor.SessionActor` on a node with
the ``kernelagent_sandbox`` resource (spread over the nodes), then asks it for events
until the session stops, and emits them into its own stream (the CLI renders them as
for a local run). Calls that meet a restarting actor are retried by Ray; a restarted
actor's events start again from its resume.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from kernelagent.cluster.connection import ClusterError, connect
from kernelagent.cluster.placement import MAX_RESTARTS, SANDBOX_RESOURCE, Placement
from kernelagent.errors import KernelAgentError
from kernelagent.events import Usage, parse_event
from kernelagent.session.runner import SessionResult
from kernelagent.session.stream import EventStream


async def run_on_cluster(address: str, placement: Placement, stream: EventStream) -> SessionResult:
    """Run ``placement`` on a node of the cluster at ``address``; its events go to ``stream``."""
    import ray
    from ray.exceptions import RayActorError

    from kernelagent.cluster.actor import SessionActor

    connect(address)
    remote = ray.remote(SessionActor).options(
        max_restarts=MAX_RESTARTS,
        max_task_retries=-1,
        num_cpus=0,
        resources={SANDBOX_RESOURCE: 1},
        scheduling_strategy="SPREAD",
    )
    actor: Any = remote.remote(placement.model_dump(mode="json"))
    cursor, incarnation = 0, ""
    try:
        while True:
            try:
                reply: dict[str, Any] = await actor.follow.remote(cursor, incarnation)
            except RayActorError as error:
                raise ClusterError(
                    f"session {placement.session_id} stopped: its actor is gone after "
                    f"{MAX_RESTARTS} restarts ({type(error).__name__})",
                    hint=f"kernelagent resume {placement.session_id} (it resumes from the store)",
                ) from None
            if reply["incarnation"] != incarnation:
                incarnation, cursor = reply["incarnation"], 0
            for data in reply["events"]:
                stream.emit(parse_event(data))
            cursor += len(reply["events"])
            if reply["done"]:
                return _result(placement, reply, stream)
    finally:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)


def _result(placement: Placement, reply: dict[str, Any], stream: EventStream) -> SessionResult:
    if reply["error"] is not None:
        message, hint = reply["error"]
        raise KernelAgentError(f"{message} (on cluster node {reply['node']})", hint)
    result = reply["result"]
    return SessionResult(
        session_id=result["session_id"],
        status=result["status"],
        answer=result["answer"],
        reason=result["reason"],
        notebook_path=Path(result["notebook"]),
        workspace=Path(result["workspace"]),
        usage=Usage.model_validate(result["usage"]),
        events=list(stream.history),
    )
