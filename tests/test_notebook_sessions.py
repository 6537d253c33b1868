"""Sessions that work in a notebook open in JupyterLab, at the HTTP level.

The test plays the panel's part (tests/test_panel_notebook_browser.py does it with the real
panel, in a browser, on a real sandbox kernel): it starts a session on a notebook with the
description the panel collects, answers each ``cell_started`` with the outputs the cell
would have in the notebook, approves a pending cell, and checks what the model was told,
what was recorded and what the session list shows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from kernelagent.session.durable import check_resumable
from kernelagent.session.store import SessionRecord, SessionStateError
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.server_fixtures import *  # noqa: F403 - pytest-jupyter's fixtures, for this module only
from tests.server_fixtures import AgentApi

NOTEBOOK_BODY = {
    "notebook_path": "analysis.ipynb",
    "cells": [
        {
            "cell_type": "code",
            "source": "df = pd.DataFrame({'region': ['n', 's'], 'revenue': [10, 50]})",
            "outputs": "",
            "execution_count": 1,
        }
    ],
    "variables": [
        {
            "name": "df",
            "type": "DataFrame",
            "shape": [2, 2],
            "columns": ["region", "revenue"],
            "dtypes": ["object", "int64"],
        }
    ],
    "active_cell": 0,
}


def write_notebook(root: Path) -> None:
    nbformat.write(nbformat.v4.new_notebook(), root / "analysis.ipynb")


def result_for(code: str) -> dict[str, Any]:
    """The outputs the notebook's kernel would give the scripted cells."""
    text = {"int(df.revenue.sum())": "60", "int(df.revenue.max())": "50"}[code]
    return {
        "outputs": [
            {
                "output_type": "execute_result",
                "execution_count": 2,
                "data": {"text/plain": text},
                "metadata": {},
            }
        ],
        "execution_count": 2,
        "status": "ok",
    }


def test_a_notebook_session_runs_its_cells_through_the_panel(
    agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    write_notebook(jp_root_dir)
    script = [
        ScriptedTurn.python("int(df.revenue.sum())"),
        ScriptedTurn.final("the total is 60"),
        ScriptedTurn.python("int(df.revenue.max())"),  # approved by the person
        ScriptedTurn.final("the largest is 50"),
    ]
    with ScriptedModelServer(script) as model:

        async def answer_cells(session_id: str, event: dict[str, Any]) -> None:
            if event["type"] == "cell_started":
                code, reply = await agent_api.call(
                    "POST",
                    "sessions",
                    session_id,
                    "cells",
                    event["cell_id"],
                    body=result_for(event["code"]),
                )
                assert code == 202, reply

        async def approve_and_answer(session_id: str, since: int) -> list[dict[str, Any]]:
            """The cell waits for approval; approve it, run it, and follow to the end."""
            waiting = await agent_api.wait_status(session_id, "awaiting_approval")
            assert waiting["pending"]["code"].startswith("int(df.revenue.")
            code, reply = await agent_api.call("POST", "sessions", session_id, "approve", body={})
            assert code == 202, reply
            return await agent_api.events(
                session_id,
                since=since,
                until=lambda event: (
                    event["type"] == "session_finished" and event["status"] == "completed"
                ),
                on_event=lambda event: answer_cells(session_id, event),
            )

        async def scenario() -> None:
            body = {
                **NOTEBOOK_BODY,
                "task": "What is the total revenue?",
                "base_url": model.base_url,
                "approve": "always",
            }
            code, reply = await agent_api.call("POST", "notebook-sessions", body=body)
            assert code == 201, reply
            session = reply["session"]
            session_id = session["id"]
            assert session["in_notebook"] == "analysis.ipynb"
            first = await agent_api.events(session_id)
            assert first[-1]["status"] == "awaiting_approval", first[-1]
            events = await approve_and_answer(session_id, first[-1]["seq"])
            assert events[-1]["status"] == "completed", events[-1]
            assert events[-1]["answer"] == "the total is 60"
            started = next(event for event in first if event["type"] == "session_started")
            assert started["sandbox"] == "notebook"

            told = json.dumps(model.completion_requests()[0].body)
            assert "analysis.ipynb" in told and "df: DataFrame; shape 2 x 2" in told
            assert "revenue (int64)" in told

            # A follow-up: the same loop goes on (df is still the notebook's).
            code, reply = await agent_api.call(
                "POST", "sessions", session_id, "messages", body={"instruction": "And the max?"}
            )
            assert code == 202, reply
            later = await approve_and_answer(session_id, events[-1]["seq"])
            assert later[-1]["answer"] == "the largest is 50"
            done = await agent_api.wait_status(session_id, "completed")
            assert done["cells"] == 2
            listed = (await agent_api.call("GET", "sessions"))[1]["sessions"]
            assert [s["in_notebook"] for s in listed] == ["analysis.ipynb"]

            recorded = nbformat.read(jp_root_dir / session["notebook"], as_version=4)
            cells = [cell for cell in recorded.cells if cell.cell_type == "code"]
            assert [cell.source for cell in cells] == [
                "int(df.revenue.sum())",
                "int(df.revenue.max())",
            ]
            assert cells[0].outputs[0]["data"]["text/plain"] == "60"
            assert recorded.metadata.kernelagent["in_notebook"] == "analysis.ipynb"

            code, reply = await agent_api.call(
                "POST", "sessions", session_id, "cells", "nope", body=result_for(cells[0].source)
            )
            assert code == 409 and "waiting" in reply["error"], reply

        run(scenario())


def test_stopping_a_notebook_session_while_its_cell_runs(
    agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    """The panel interrupts the notebook's kernel and stops the session: the cell the agent
    waited for ends interrupted, the session too, and a late result is refused."""
    write_notebook(jp_root_dir)
    with ScriptedModelServer([ScriptedTurn.python("int(df.revenue.sum())")]) as model:

        async def scenario() -> None:
            body = {**NOTEBOOK_BODY, "task": "Total?", "base_url": model.base_url}
            code, reply = await agent_api.call("POST", "notebook-sessions", body=body)
            assert code == 201, reply
            session_id = reply["session"]["id"]
            started = await agent_api.events(
                session_id, until=lambda event: event["type"] == "cell_started"
            )
            cell_id = started[-1]["cell_id"]
            code, reply = await agent_api.call("POST", "sessions", session_id, "stop")
            assert code == 202, reply
            events = await agent_api.events(session_id, since=started[-1]["seq"])
            finished = next(event for event in events if event["type"] == "cell_finished")
            assert finished["cell_id"] == cell_id and finished["status"] == "interrupted"
            assert events[-1]["type"] == "session_finished"
            assert events[-1]["status"] == "interrupted"
            code, reply = await agent_api.call(
                "POST",
                "sessions",
                session_id,
                "cells",
                cell_id,
                body=result_for("int(df.revenue.sum())"),
            )
            assert code == 409, reply

        run(scenario())


def test_a_notebook_session_is_not_resumed_outside_jupyterlab(tmp_path: Path) -> None:
    """Its cells ran on a notebook's kernel: the CLI's resume would start another one."""
    record = SessionRecord(
        id="abc",
        status="completed",
        task="t",
        created_at=time.time(),
        updated_at=time.time(),
        notebook=tmp_path / "s.ipynb",
        workspace=tmp_path,
        config={"in_notebook": "analysis.ipynb"},
    )
    with pytest.raises(SessionStateError, match="continue it there"):
        check_resumable(record, "go on", None)
