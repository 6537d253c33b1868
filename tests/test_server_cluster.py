"""The Jupyter server extension with ``KernelAgentExtension.cluster``: the sessions the
panel starts and follows up run on the nodes of a real Ray cluster (tests/ray_fixtures.py),
and their events reach the panel's API as for a session run in the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from traitlets.config import Config

from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.ray_fixtures import *  # noqa: F403 - the module's Ray cluster (ray_cluster)
from tests.ray_fixtures import RayCluster
from tests.server_fixtures import *  # noqa: F403 - pytest-jupyter's fixtures, for this module only
from tests.server_fixtures import AgentApi


@pytest.fixture
def jp_server_config(ka_home: Path, ray_cluster: RayCluster) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"kernelagent.server": True}},
            "KernelAgentExtension": {
                "store_home": str(ray_cluster.home),
                "store_url": ray_cluster.store_url,
                "cluster": ray_cluster.address,
            },
        }
    )


def test_the_panel_s_sessions_run_on_the_nodes(
    docker_available: None,
    ray_cluster: RayCluster,
    agent_api: AgentApi,
    run: Any,
    jp_root_dir: Path,
) -> None:
    script = [
        ScriptedTurn.python("x = 41\nprint('hello from a node')"),
        ScriptedTurn.final("set"),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as model:

        async def scenario() -> None:
            session = await agent_api.create(task="Set x", base_url=model.base_url)
            assert session["status"] in ("starting", "running"), session
            session_id = session["id"]
            events = await agent_api.events(session_id)
            kinds = [event["type"] for event in events]
            assert kinds[0] == "session_started" and "cell_finished" in kinds, kinds
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            output = next(e for e in events if e["type"] == "output")
            assert output["output"]["text"] == "hello from a node\n"
            assert events[-1]["status"] == "completed" and events[-1]["answer"] == "set"
            store = SessionStore(ray_cluster.home, url=ray_cluster.store_url)
            assert store.get(session_id).node in ray_cluster.worker_ids()

            code, reply = await agent_api.call(
                "POST", "sessions", session_id, "messages", body={"instruction": "add one"}
            )
            assert code == 202, reply
            follow = await agent_api.events(session_id, since=len(events))
            assert follow[0]["seq"] == len(events) + 1
            assert follow[-1]["status"] == "completed" and follow[-1]["answer"] == "42"
            notebook = nbformat.read(jp_root_dir / session["notebook"], as_version=4)
            cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
            assert cells[-1].outputs[0]["data"]["text/plain"] == "42"  # x restored on a node
            assert notebook.metadata.kernelagent.node in ray_cluster.worker_ids()

        run(scenario())
