"""The Jupyter server extension: HTTP + WebSocket API, sessions in the server's loop.

Real Jupyter server (pytest-jupyter), real Docker sandboxes, real openai client against
the scripted model server on 127.0.0.1. Tests are plain functions that drive the
server's event loop with ``run(...)`` (see tests/server_fixtures.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import docker
import nbformat
import pytest
import tornado.web
from jupyter_server.auth.decorator import ws_authenticated
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketHandler, websocket_connect

from kernelagent.memory import open_memory_store
from kernelagent.server import handlers as server_handlers
from kernelagent.server.memory_handlers import memory_handlers
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.server_fixtures import *  # noqa: F403 - pytest-jupyter's fixtures, for this module only
from tests.server_fixtures import AgentApi

SALES = "region,revenue\nnorth,10\nsouth,50\n"
BASIC_SCRIPT = [
    ScriptedTurn.python("print('hello from the sandbox')"),
    ScriptedTurn.python(
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\nint(df.revenue.sum())"
    ),
    ScriptedTurn.final("the total is 60"),
]
FOLLOW_UP_SCRIPT = [ScriptedTurn.python("int(df.revenue.max())"), ScriptedTurn.final("50")]
SLOW_CELL = "import time\nfor i in range(1200):\n    print(i, flush=True)\n    time.sleep(0.1)"


def code_cells(path: Path) -> list[nbformat.NotebookNode]:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def write_sales(root: Path) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "sales.csv").write_text(SALES)


# -- a session, its events, reconnecting, follow-ups ---------------------------------------


def test_session_streams_events_and_records_notebook(
    store_url: str,
    docker_available: None,
    agent_api: AgentApi,
    run: Any,
    jp_root_dir: Path,
    ka_home: Path,
) -> None:
    """On both stores; the event log the server keeps is the one it served."""
    write_sales(jp_root_dir)
    with ScriptedModelServer(BASIC_SCRIPT + FOLLOW_UP_SCRIPT) as model:

        async def scenario() -> None:
            session = await agent_api.create(
                task="Total revenue?",
                data=["data/sales.csv"],
                base_url=model.base_url,
                sandbox="docker",
            )
            assert session["status"] in ("starting", "running")
            assert re.fullmatch(
                r"kernelagent-sessions/total-revenue-[0-9a-f]{6}\.ipynb", session["notebook"]
            )
            assert session["pending"] is None and session["task"] == "Total revenue?"
            session_id = session["id"]

            events = await agent_api.events(session_id)
            seqs = [event["seq"] for event in events]
            assert seqs == list(range(1, len(events) + 1)), seqs
            assert all(event["session_id"] == session_id for event in events)
            assert types(events)[0] == "session_started"
            for kind in ("cell_started", "output", "cell_finished", "usage", "status_changed"):
                assert kind in types(events), types(events)
            first_output = next(e for e in events if e["type"] == "output")
            assert first_output["output"]["text"] == "hello from the sandbox\n"
            finished = events[-1]
            assert finished["type"] == "session_finished"
            assert finished["status"] == "completed" and finished["answer"] == "the total is 60"
            cell_started = types(events).index("cell_started")
            assert (
                cell_started < types(events).index("output") < types(events).index("cell_finished")
            )

            notebook = jp_root_dir / session["notebook"]
            cells = code_cells(notebook)
            assert [c.metadata.kernelagent.status for c in cells] == ["ok", "ok"]
            assert cells[1].outputs[0]["data"]["text/plain"] == "60"
            assert (
                notebook.parent / notebook.stem / "sales.csv"
            ).read_text() == SALES  # its workspace

            detail = await agent_api.session(session_id)
            assert detail["session"]["status"] == "completed"
            assert detail["session"]["cells"] == 2 and detail["session"]["input_tokens"] > 0
            assert [e["seq"] for e in detail["events"]] == seqs
            code, listing = await agent_api.call("GET", "sessions")
            assert code == 200 and [s["id"] for s in listing["sessions"]] == [session_id]
            assert listing["sessions"][0]["notebook"] == session["notebook"]

            # A client that reconnects after seq N gets only what came later.
            n = next(e["seq"] for e in events if e["type"] == "cell_finished")
            later = await agent_api.events(session_id, since=n)
            assert [e["seq"] for e in later] == list(range(n + 1, len(events) + 1))

            # A follow-up: the same log, numbering goes on; the kernel kept df.
            code, reply = await agent_api.call(
                "POST", "sessions", session_id, "messages", body={"instruction": "And the largest?"}
            )
            assert code == 202, reply
            code, again = await agent_api.call(
                "POST", "sessions", session_id, "messages", body={"instruction": "too soon"}
            )
            assert code == 409 and again["error"] and "hint" in again
            follow = await agent_api.events(session_id, since=len(events))
            assert follow[0]["seq"] == len(events) + 1
            assert [e["seq"] for e in follow] == list(
                range(len(events) + 1, len(events) + 1 + len(follow))
            )
            assert follow[-1]["status"] == "completed" and follow[-1]["answer"] == "50"
            assert {"type": "user_message", "text": "And the largest?"}.items() <= next(
                e for e in follow if e["type"] == "user_message"
            ).items()
            everything = (await agent_api.session(session_id))["events"]
            assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
            cells = code_cells(notebook)
            assert cells[-1].outputs[0]["data"]["text/plain"] == "50"
            kept = SessionStore(ka_home).events(session_id)
            assert kept == [e for e in everything if e["type"] != "assistant_text_delta"]

        run(scenario())


# -- approvals ---------------------------------------------------------------------------------


def test_shell_command_waits_for_approval_then_completes(
    docker_available: None, agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    script = [
        ScriptedTurn.python("x = 41"),
        ScriptedTurn.shell("echo approved > proof.txt && cat proof.txt"),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("42"),
    ]
    with ScriptedModelServer(script) as model:

        async def scenario() -> None:
            session = await agent_api.create(
                task="needs approval", base_url=model.base_url, sandbox="docker", approve="shell"
            )
            session_id = session["id"]
            events = await agent_api.events(session_id)
            assert events[-1]["status"] == "awaiting_approval"
            assert "approval_requested" in types(events)
            waiting = await agent_api.wait_status(session_id, "awaiting_approval")
            pending = waiting["pending"]
            assert set(pending) == {"cell_id", "kind", "code", "code_sha256", "reason"}
            assert pending["kind"] == "shell" and "echo approved > proof.txt" in pending["code"]
            assert len(pending["code_sha256"]) == 64 and "shell" in pending["reason"]

            code, reply = await agent_api.call("POST", "sessions", session_id, "approve", body={})
            assert code == 202, reply
            later = await agent_api.events(session_id, since=events[-1]["seq"])
            assert later[0]["seq"] == events[-1]["seq"] + 1
            assert "approval_decided" in types(later)
            assert later[-1]["status"] == "completed" and later[-1]["answer"] == "42"
            done = await agent_api.wait_status(session_id, "completed")
            assert done["pending"] is None

            cells = code_cells(jp_root_dir / session["notebook"])
            assert [c.metadata.kernelagent.status for c in cells] == ["ok", "ok", "ok"]
            assert cells[2].outputs[0]["data"]["text/plain"] == "42"  # same kernel: x survived
            assert [d["decision"] for d in cells[1].metadata.kernelagent.approval] == [
                "requested",
                "approved",
            ]

            for action in ("approve", "reject"):
                code, reply = await agent_api.call("POST", "sessions", session_id, action, body={})
                assert code == 409 and "no pending action" in reply["error"], reply

        run(scenario())


def test_reject_with_reason_reaches_the_model(
    docker_available: None, agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    script = [ScriptedTurn.shell("rm -rf /workspace/*"), ScriptedTurn.final("did not delete")]
    with ScriptedModelServer(script) as model:

        async def scenario() -> None:
            session = await agent_api.create(
                task="clean up", base_url=model.base_url, approve="shell"
            )
            first = await agent_api.events(session["id"])
            assert first[-1]["status"] == "awaiting_approval"
            await agent_api.wait_status(session["id"], "awaiting_approval")
            code, reply = await agent_api.call(
                "POST",
                "sessions",
                session["id"],
                "reject",
                body={"reason": "never delete the inputs"},
            )
            assert code == 202, reply
            later = await agent_api.events(session["id"], since=first[-1]["seq"])
            assert later[-1]["status"] == "completed"
            cell = code_cells(jp_root_dir / session["notebook"])[0]
            assert cell.metadata.kernelagent.status == "rejected"
            assert cell.metadata.kernelagent.approval[-1]["reason"] == "never delete the inputs"
            assert "never delete the inputs" in json.dumps(model.completion_requests()[-1].body)

        run(scenario())


# -- stopping ---------------------------------------------------------------------------------


def test_stop_interrupts_a_long_cell_and_the_notebook_stays_valid(
    docker_available: None, agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    with ScriptedModelServer(
        [ScriptedTurn.python(SLOW_CELL), ScriptedTurn.final("never")]
    ) as model:

        async def scenario() -> None:
            session = await agent_api.create(task="count slowly", base_url=model.base_url)
            session_id = session["id"]

            async def stop_after_output(event: dict[str, Any]) -> None:
                if event["type"] == "output" and event["output"].get("text", "").startswith("3\n"):
                    code, reply = await agent_api.call("POST", "sessions", session_id, "stop")
                    assert code == 202, reply

            events = await agent_api.events(session_id, on_event=stop_after_output)
            assert events[-1]["status"] == "interrupted"
            finished_cell = [e for e in events if e["type"] == "cell_finished"]
            assert finished_cell and finished_cell[-1]["status"] == "interrupted"
            stopped = await agent_api.wait_status(session_id, "interrupted")
            assert stopped["reason"]
            code, reply = await agent_api.call("POST", "sessions", session_id, "stop")
            assert code == 409, reply
            cells = code_cells(jp_root_dir / session["notebook"])
            assert cells[0].metadata.kernelagent.status == "interrupted"
            assert cells[0].outputs and cells[0].outputs[0]["text"].startswith("0\n")

        run(scenario())


def test_stopping_the_extension_interrupts_sessions_and_removes_sandboxes(
    docker_available: None,
    agent_api: AgentApi,
    run: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
    ka_home: Path,
) -> None:
    with ScriptedModelServer(
        [ScriptedTurn.python(SLOW_CELL), ScriptedTurn.final("never")]
    ) as model:

        async def scenario() -> str:
            session = await agent_api.create(task="count slowly", base_url=model.base_url)
            await agent_api.events(
                session["id"],
                until=lambda e: e["type"] == "output" and e["output"].get("text") == "2\n",
            )
            return session["id"]

        session_id = run(scenario())
        record = SessionStore(ka_home).get(session_id)
        container_id = record.sandbox_state["provisioner_info"]["container_id"]
        extension = jp_serverapp.web_app.settings["kernelagent"]
        assert extension.current_activity() == [session_id]
        run(extension.stop_extension())

    record = SessionStore(ka_home).get(session_id)
    assert record.status == "interrupted" and record.sandbox_state is None
    cells = code_cells(record.notebook)
    assert cells[0].metadata.kernelagent.status == "interrupted"
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(container_id)
    assert not extension.current_activity()


# -- replay -----------------------------------------------------------------------------------


def test_replay_of_a_recorded_session_matches(
    docker_available: None, agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    write_sales(jp_root_dir)
    with ScriptedModelServer(BASIC_SCRIPT) as model:

        async def scenario() -> None:
            session = await agent_api.create(
                task="Total revenue?", data=["data/sales.csv"], base_url=model.base_url
            )
            events = await agent_api.events(session["id"])
            assert events[-1]["status"] == "completed"
            await agent_api.wait_status(session["id"], "completed")
            code, report = await agent_api.call(
                "POST", "replay", body={"path": session["notebook"]}
            )
            assert code == 200, report
            assert (report["matched"], report["diverged"], report["error"]) == (2, 0, 0), report
            assert [cell["outcome"] for cell in report["cells"]] == ["matched", "matched"]

            code, reply = await agent_api.call("POST", "replay", body={"path": "missing.ipynb"})
            assert code == 400 and "not found" in reply["error"] and reply["hint"]
            code, reply = await agent_api.call("POST", "replay", body={"path": "../../etc/passwd"})
            assert code == 400 and "outside" in reply["error"]

        run(scenario())


# -- errors (no Docker needed) ------------------------------------------------------------------


def test_unknown_sessions_and_bad_requests(
    agent_api: AgentApi, run: Any, jp_root_dir: Path
) -> None:
    async def scenario() -> None:
        for method, path in [
            ("GET", ("sessions", "nosuchsession")),
            ("POST", ("sessions", "nosuchsession", "messages")),
            ("POST", ("sessions", "nosuchsession", "approve")),
            ("POST", ("sessions", "nosuchsession", "reject")),
            ("POST", ("sessions", "nosuchsession", "stop")),
        ]:
            body = {"instruction": "x"} if path[-1] == "messages" else None
            code, reply = await agent_api.call(method, *path, body=body)
            assert code == 404, (path, reply)
            assert reply["error"] == "no session 'nosuchsession'" and reply["hint"]
        with pytest.raises(HTTPClientError) as refused:
            await agent_api.ws_fetch("kernelagent", "api", "sessions", "nosuchsession", "events")
        assert refused.value.code == 404

        code, reply = await agent_api.call(
            "POST", "sessions", body={"task": "t", "data": ["nope.csv"]}
        )
        assert code == 400 and reply["error"] == "data file not found: nope.csv" and reply["hint"]
        code, reply = await agent_api.call(
            "POST", "sessions", body={"task": "t", "data": ["../outside.csv"]}
        )
        assert code == 400 and "outside" in reply["error"]
        for body in (
            {},
            {"task": ""},
            {"task": "t", "approve": "sometimes"},
            {"task": "t", "max_steps": 0},
            {"task": "t", "sandbox": "vm"},
            {"task": "t", "data": "x.csv"},
        ):
            code, reply = await agent_api.call("POST", "sessions", body=body)
            assert code == 400 and reply["error"], (body, reply)
        code, listing = await agent_api.call("GET", "sessions")
        assert code == 200 and listing == {"sessions": []}
        assert not list(jp_root_dir.glob("kernelagent-sessions/*.ipynb"))

    run(scenario())


def test_model_errors_after_the_session_started_arrive_as_events(
    docker_available: None, agent_api: AgentApi, run: Any
) -> None:
    script = [
        ScriptedTurn.python("1 + 1"),
        ScriptedTurn.error(401, "Incorrect API key provided: sk-xx..."),
    ]
    with ScriptedModelServer(script) as model:

        async def scenario() -> None:
            session = await agent_api.create(task="fails midway", base_url=model.base_url)
            events = await agent_api.events(session["id"])
            tail = events[-3:]
            assert types(tail) == ["error", "status_changed", "session_finished"], types(events)
            assert "Incorrect API key" in tail[0]["message"] and tail[0]["hint"]
            assert tail[1]["status"] == tail[2]["status"] == "failed"
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            failed = await agent_api.wait_status(session["id"], "failed")
            assert "Incorrect API key" in failed["reason"]

        run(scenario())


def test_model_errors_before_the_session_starts_are_http_errors(
    agent_api: AgentApi, run: Any
) -> None:
    with ScriptedModelServer([]) as model:
        dead_url = model.base_url

    async def scenario() -> None:
        code, reply = await agent_api.call(
            "POST", "sessions", body={"task": "t", "base_url": dead_url}
        )
        assert code == 502, reply
        assert reply["error"] and reply["hint"]

    run(scenario())


# -- authentication -----------------------------------------------------------------------------

_AUTHENTICATED = tornado.web.authenticated(lambda self: None).__code__
_WS_AUTHENTICATED = ws_authenticated(lambda self: None).__code__


def kernelagent_routes(web_app: tornado.web.Application) -> list[tuple[str, type]]:
    """(pattern, handler class) of every registered route served by kernelagent."""
    found: dict[tuple[str, type], None] = {}

    def walk(router: Any) -> None:
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, type) and issubclass(target, tornado.web.RequestHandler):
                if target.__module__.startswith("kernelagent"):
                    found[(rule.matcher.regex.pattern, target)] = None
            elif hasattr(target, "rules"):
                walk(target)

    walk(web_app.default_router)
    return list(found)


def implemented_methods(handler: type[tornado.web.RequestHandler]) -> list[str]:
    """HTTP methods the handler serves, except jupyter_server's own CORS preflight
    (``APIHandler.options``, deliberately ``@allow_unauthenticated`` and answering only
    CORS headers). Any method kernelagent itself defines is always included."""
    methods = []
    for name in handler.SUPPORTED_METHODS:
        method = getattr(handler, name.lower())
        if method is tornado.web.RequestHandler._unimplemented_method:
            continue
        owner = next(cls for cls in handler.__mro__ if name.lower() in vars(cls))
        inherited = not owner.__module__.startswith("kernelagent")
        if inherited and name == "OPTIONS" and getattr(method, "__allow_unauthenticated", False):
            continue
        methods.append(name)
    return methods


def test_every_kernelagent_handler_requires_authentication(jp_serverapp: Any) -> None:
    routes = kernelagent_routes(jp_serverapp.web_app)
    registered = {handler for _, handler in routes}
    expected = server_handlers.default_handlers + memory_handlers
    assert registered == {handler for _, handler in expected}
    assert len(routes) == len(expected) == 12
    unauthenticated = []
    for pattern, handler in routes:
        for name in implemented_methods(handler):
            method = getattr(handler, name.lower())
            wanted = _WS_AUTHENTICATED if issubclass(handler, WebSocketHandler) else _AUTHENTICATED
            if getattr(method, "__code__", None) is not wanted or not hasattr(
                method, "__wrapped__"
            ):
                unauthenticated.append(f"{name} {pattern} ({handler.__name__})")
    assert not unauthenticated, (
        "handlers without @web.authenticated / @ws_authenticated: " + ", ".join(unauthenticated)
    )


def test_every_route_refuses_requests_without_a_token(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, agent_api: AgentApi, run: Any
) -> None:
    routes = kernelagent_routes(jp_serverapp.web_app)
    assert routes

    async def scenario() -> None:
        for pattern, handler in routes:
            url = re.sub(r"\(\?P<\w+>[^)]*\)", "0123456789ab", pattern).rstrip("$")
            for name in implemented_methods(handler):
                if issubclass(handler, WebSocketHandler):
                    with pytest.raises(HTTPClientError) as refused:
                        await websocket_connect(f"ws://127.0.0.1:{jp_http_port}{url}")
                    assert refused.value.code == 403, url
                    continue
                # A matching XSRF cookie and header, so what refuses is authentication.
                response = await http_server_client.fetch(
                    url,
                    method=name,
                    body="{}" if name in ("POST", "PUT", "PATCH") else None,
                    headers={"Cookie": "_xsrf=c0ffee", "X-XSRFToken": "c0ffee"},
                    raise_error=False,
                    follow_redirects=False,
                )
                assert response.code == 403, (name, url, response.code, response.body)
                assert b"xsrf" not in response.body.lower(), (name, url, response.body)
        # With the token, the same routes answer (they exist, and refused only for auth).
        assert (await agent_api.call("GET", "sessions"))[0] == 200
        assert (await agent_api.call("POST", "sessions", "0123456789ab", "stop"))[0] == 404
        assert (await agent_api.call("POST", "replay", body={}))[0] == 400

    run(scenario())


def test_memories_are_listed_searched_and_deleted(
    store_url: str, ka_home: Path, agent_api: AgentApi, run: Any
) -> None:
    """On both stores: the server's memories are those of its session store."""
    store = open_memory_store(ka_home)
    kept = store.remember("revenue in sales.csv is in cents", dataset_name="sales.csv")
    gone = store.remember("weather.csv temperatures are Fahrenheit")

    async def get(*path: str, method: str = "GET", **params: str) -> tuple[int, Any]:
        response = await agent_api.fetch(
            "kernelagent",
            "api",
            "memories",
            *path,
            method=method,
            params=params,
            raise_error=False,
        )
        return response.code, json.loads(response.body)

    async def scenario() -> None:
        code, reply = await get()
        assert code == 200 and {m["id"] for m in reply["memories"]} == {kept.id, gone.id}
        code, reply = await get(q="revenue")
        assert code == 200 and [m["id"] for m in reply["memories"]] == [kept.id]
        code, reply = await get(gone.id, method="DELETE")
        assert code == 200 and reply["memory"]["id"] == gone.id
        code, reply = await get(gone.id)
        assert code == 404 and "kernelagent memory list" in reply["hint"]
        assert (await get(limit="x"))[0] == 400

    run(scenario())
    assert [memory.id for memory in store.list()] == [kept.id]
