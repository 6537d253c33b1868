"""Placing a session on the cluster and following it from the submitting process.

The submitter hands the session to a node host (:mod:`.hosts`: one per node, many
sessions each), then asks it for events until the session stops, and emits them into its
own stream (the CLI renders them as for a local run).

Who recovers a session whose node died: **the process that follows it**, and nobody
else. Node hosts are never restarted by Ray (``max_restarts=0``: a host that died, with
its node or alone, is gone with what it held in memory). When the follow call fails with
the host's death, the submitter places the same session again on a live node host, as a
take-over from the lost node (``Placement.lost_node``); that host claims the session in
the store (one locked update, so only one host ever takes it over) and resumes it by
replay, at most ``$KERNELAGENT_CLUSTER_MAX_RESTARTS`` times. When the submitter is gone
too, the session stays in the store as running on a dead node until someone runs
``kernelagent resume ID`` (or ``approve``): that placement takes it over the same way. A
submitter that is merely gone (its node host lives) leaves the session running to its
stop there; a submitter stopped by Ctrl-C stops its session, as a local run does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernelagent.cluster.connection import ClusterError, connect
from kernelagent.cluster.hosts import Admitted, forget_host, place, running_on
from kernelagent.cluster.placement import MAX_RESTARTS, Placement
from kernelagent.errors import KernelAgentError
from kernelagent.events import SessionFinished, StatusChanged, Usage, parse_event
from kernelagent.session.runner import SessionResult
from kernelagent.session.store import SessionRecord, SessionStateError, SessionStore
from kernelagent.session.stream import EventStream

UNAVAILABLE_PAUSE = 0.5


async def run_on_cluster(
    address: str,
    placement: Placement,
    stream: EventStream,
    record: SessionRecord | None = None,
    *,
    on_placed: Callable[[str], None] | None = None,
) -> SessionResult:
    """Run ``placement`` on a node of the cluster at ``address``; its events go to ``stream``.
    ``record``: the stored session a ``resume`` placement goes on with (it goes back to
    the node that holds its sandbox while that node lives). ``on_placed`` gets the
    session's id once a node host admitted it."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    connect(address)
    prefer = None
    if record is not None:
        placement = placement.model_copy(update={"lost_node": await check_not_running(record)})
        prefer = record.node if record.sandbox_state else None
    admitted = await place(placement, prefer=prefer)
    if on_placed is not None:
        on_placed(placement.session_id)
    cursor, moves, finished = 0, 0, None
    taken_in = False  # the current attempt got the session running
    try:
        while True:
            try:
                reply: dict[str, Any] = await admitted.host.follow.remote(
                    placement.session_id, cursor, admitted.incarnation
                )
            except ActorUnavailableError:  # a moment's loss of contact: it may come back
                await asyncio.sleep(UNAVAILABLE_PAUSE)
                continue
            except RayActorError:
                reply = {"gone": True}
            if reply.get("gone"):
                if finished is not None:  # it stopped there; only the reply was lost
                    return _finished_result(placement, finished, stream)
                moves += 1
                if moves > MAX_RESTARTS:
                    raise ClusterError(
                        f"session {placement.session_id} stopped: the node running it was "
                        f"lost {moves} times",
                        hint=f"kernelagent resume {placement.session_id} (it resumes from the "
                        "store)",
                    )
                forget_host(admitted.node, placement.environment)
                placement = _again(placement, admitted.node, taken_in)
                admitted = await place(placement)  # on a live node: the lost one is not
                cursor, taken_in = 0, False
                continue
            for data in reply["events"]:
                event = stream.emit(parse_event(data))
                if event.attempt is None:
                    if isinstance(event, StatusChanged) and event.status == "running":
                        taken_in = True
                    elif isinstance(event, SessionFinished):
                        finished = event
            cursor += len(reply["events"])
            if reply["done"]:
                with contextlib.suppress(Exception):
                    admitted.host.forget.remote(placement.session_id, admitted.incarnation)
                return _result(reply, stream)
    except asyncio.CancelledError:
        await _cancel(admitted, placement.session_id)
        raise


def _again(placement: Placement, lost: str, taken_in: bool) -> Placement:
    """The same session for another node host, after ``lost`` died under it."""
    update: dict[str, Any] = {"lost_node": lost, "retry": True}
    if placement.kind == "continue":
        update = {}  # not in the store: it starts again from the notebook it continues
    elif taken_in:
        update.update(instruction=placement.instruction if placement.kind == "run" else None)
        update.update(decision=None)
    return placement.model_copy(update=update)


async def _cancel(admitted: Admitted, session_id: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(admitted.host.cancel.remote(session_id), 5)


async def check_not_running(record: SessionRecord) -> str | None:
    """Before a resume: refuse a session that runs on a live node host now; return the
    node it was left running on when that node is gone (the resume takes it over)."""
    if record.status not in ("running", "starting") or record.node is None:
        return None
    if await running_on(record.node, record.id):
        raise SessionStateError(
            f"session {record.id} is running on cluster node {record.node}",
            hint="wait until it stops (kernelagent sessions), then resume it",
        )
    return record.node


def _result(reply: dict[str, Any], stream: EventStream) -> SessionResult:
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


def _finished_result(
    placement: Placement, finished: SessionFinished, stream: EventStream
) -> SessionResult:
    if placement.kind == "continue":
        notebook, workspace = Path(placement.out or ""), Path(placement.workspace or "")
    else:
        environment = placement.environment
        record = SessionStore(
            environment.get("KERNELAGENT_HOME"), url=environment.get("KERNELAGENT_STORE_URL")
        ).get(placement.session_id)
        notebook, workspace = Path(record.notebook), Path(record.workspace)
    return SessionResult(
        session_id=finished.session_id or placement.session_id,
        status=finished.status,
        answer=finished.answer,
        reason=finished.reason,
        notebook_path=notebook,
        workspace=workspace,
        usage=finished.usage,
        events=list(stream.history),
    )
