"""The Jupyter server extension on a local model: a session asks for ``local:<model>``
and runs on the machine's shared model service (a stand-in server here, see
tests/model_service_fixtures.py), holding a lease only while it runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kernelagent.localmodel.service import running_services
from kernelagent.localmodel.store import ModelStore
from tests.model_service_fixtures import tiny
from tests.server_fixtures import *  # noqa: F403 - pytest-jupyter's fixtures, for this module only)
from tests.server_fixtures import AgentApi

REPLIES = ["I will compute it.\n```python\nprint(6 * 7)\n```", "FINAL ANSWER: 42"]


def test_a_panel_session_on_a_local_model_uses_the_shared_service(
    models: ModelStore, agent_api: AgentApi, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_REPLIES", json.dumps(REPLIES))

    async def scenario() -> None:
        session = await agent_api.create(task="What is 6 * 7?", model=f"local:{tiny(models)}")
        events = await agent_api.events(session["id"])
        finished = events[-1]
        assert finished["status"] == "completed" and finished["answer"] == "42", finished
        detail = await agent_api.session(session["id"])
        assert detail["session"]["status"] == "completed"
        # the run's lease goes once it has closed its sandbox, just after session_finished
        while running_services(models.root)[0].sessions:
            await asyncio.sleep(0.2)

    run(scenario())
    (served,) = running_services(models.root)
    assert (
        served.state.model == "tiny"
        and Path(served.state.model_path) == Path(tiny(models)).resolve()
    )
    assert served.sessions == []
