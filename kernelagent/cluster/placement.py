"""What a submitter sends to the node that runs a session, and where the cluster is."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Literal

from pydantic import BaseModel

CLUSTER_VARIABLE = "KERNELAGENT_CLUSTER"
SANDBOX_RESOURCE = "kernelagent_sandbox"
"""The custom resource of nodes that have a Docker engine and the sandbox image."""
MAX_RESTARTS = int(os.environ.get("KERNELAGENT_CLUSTER_MAX_RESTARTS", 3))
"""How many times a submitter places a session again after the node running it died."""
NAMESPACE = "kernelagent"
"""The Ray namespace of the node hosts (named, detached actors)."""


def cluster_address(explicit: str | None = None) -> str:
    """The Ray address asked for (``""`` runs here), else ``$KERNELAGENT_CLUSTER``."""
    if explicit is not None:
        return explicit.strip()
    return os.environ.get(CLUSTER_VARIABLE, "").strip()


class Placement(BaseModel):
    """A session to run on a node: a new one (``run``), a stored one (``resume``), or a
    recorded notebook worked on further (``continue``)."""

    kind: Literal["run", "resume", "continue"]
    session_id: str
    instruction: str | None
    """The task of a new session; the next instruction of a resumed one (may be None)."""
    config: dict[str, Any]
    data: list[str] = []
    workspace: str | None = None
    """``run``: the session's workspace; ``continue``: the recorded notebook's files."""
    notebook: str | None = None
    """``run``: where to record; ``continue``: the recorded notebook."""
    out: str | None = None
    """``continue``: the notebook the continued session is recorded in (may be ``notebook``)."""
    api_key: str | None = None
    decision: dict[str, Any] | None = None
    environment: dict[str, str] = {}
    """The submitter's ``KERNELAGENT_*`` settings (home, store): the node host's process
    environment (sessions with another environment get a node host of their own)."""
    lost_node: str | None = None
    """The node the session was running on when that node (or its host) died: the node
    host that receives this placement takes the session over from it."""
    retry: bool = False
    """Placed again by its submitter after ``lost_node`` died: the lost attempt may have
    taken the instruction in already (a session it left running goes on without it)."""


def host_name(node_id: str, environment: dict[str, str]) -> str:
    """The name of the node host of ``node_id`` for sessions with ``environment``."""
    digest = hashlib.sha256(json.dumps(environment, sort_keys=True).encode()).hexdigest()
    return f"{HOST_PREFIX}{node_id}-{digest[:12]}"


HOST_PREFIX = "kernelagent-host-"


def node_environment(home: str, store_url: str) -> dict[str, str]:
    """What the node's process needs to find the same store and session directories."""
    settings = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("KERNELAGENT_") and name != CLUSTER_VARIABLE
    }
    return {**settings, "KERNELAGENT_HOME": home, "KERNELAGENT_STORE_URL": store_url}
