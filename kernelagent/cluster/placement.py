"""What a submitter sends to the node that runs a session, and where the cluster is."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel

CLUSTER_VARIABLE = "KERNELAGENT_CLUSTER"
SANDBOX_RESOURCE = "kernelagent_sandbox"
"""The custom resource of nodes that have a Docker engine and the sandbox image."""
MAX_RESTARTS = int(os.environ.get("KERNELAGENT_CLUSTER_MAX_RESTARTS", 3))
"""How many times a session's actor is restarted on another node after its node died."""


def cluster_address(explicit: str | None = None) -> str:
    """The Ray address asked for (``""`` runs here), else ``$KERNELAGENT_CLUSTER``."""
    if explicit is not None:
        return explicit.strip()
    return os.environ.get(CLUSTER_VARIABLE, "").strip()


class Placement(BaseModel):
    """A session to run on a node: a new one (``run``) or a stored one (``resume``)."""

    kind: Literal["run", "resume"]
    session_id: str
    instruction: str | None
    """The task of a new session; the next instruction of a resumed one (may be None)."""
    config: dict[str, Any]
    data: list[str] = []
    workspace: str | None = None
    notebook: str | None = None
    api_key: str | None = None
    decision: dict[str, Any] | None = None
    environment: dict[str, str] = {}
    """The submitter's ``KERNELAGENT_*`` settings (home, store) for the node's process."""


def node_environment(home: str, store_url: str) -> dict[str, str]:
    """What the node's process needs to find the same store and session directories."""
    settings = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("KERNELAGENT_") and name != CLUSTER_VARIABLE
    }
    return {**settings, "KERNELAGENT_HOME": home, "KERNELAGENT_STORE_URL": store_url}
