"""Transport failures are retried, not read as model turns.

The real openai client over HTTP to the scripted server on 127.0.0.1; sessions run on
the local (unisolated) kernel so these need no Docker.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest

from kernelagent import api
from kernelagent.agent.chat_model import ChatCompletionsModel
from kernelagent.agent.model import Conversation, ModelUnavailableError
from kernelagent.agent.responses_model import ResponsesModel
from kernelagent.agent.transport import RetryPolicy, reporting_retries, retry_requests_for
from kernelagent.events import AssistantText, ModelRetrying
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

FAST_RETRIES = {"KERNELAGENT_MODEL_RETRY_DELAY": "0.01"}


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_RETRIES.items():
        monkeypatch.setenv(name, value)


def actions(api_kind: str) -> list[ScriptedTurn]:
    """Compute, then answer: as tool calls, or as code blocks for the code-block path."""
    if api_kind == "code-blocks":
        return [
            ScriptedTurn.say("```python\nprint(6 * 7)\n```"),
            ScriptedTurn.say("FINAL ANSWER: 42"),
        ]
    return [ScriptedTurn.python("print(6 * 7)"), ScriptedTurn.final("42")]


def run_session(
    server: ScriptedModelServer, api_kind: str, stream: bool, tmp_path: Path
) -> api.SessionResult:
    config = api.build_config(api=api_kind, base_url=server.base_url, sandbox="local", model="m")  # type: ignore[arg-type]
    config.stream = stream
    return asyncio.run(
        api.arun(
            "What is 6 * 7?",
            config=config,
            api_key="k",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
            store=SessionStore(tmp_path / "home"),
        )
    )


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize("api_kind", ["chat", "code-blocks", "responses"])
def test_four_empty_replies_then_a_normal_turn_completes(
    api_kind: str, stream: bool, tmp_path: Path
) -> None:
    first, final = actions(api_kind)
    script = [ScriptedTurn.empty_stream()] * 4 + [first, final]
    with ScriptedModelServer(script) as server:
        result = run_session(server, api_kind, stream, tmp_path)
        requests = server.completion_requests()
    assert result.status == "completed" and result.answer == "42", result.reason
    retries = [event for event in result.events if isinstance(event, ModelRetrying)]
    assert [event.retry for event in retries] == [1, 2, 3, 4]
    assert retries[1].message == "model server busy, retrying 2/5"
    expected = {"responses": "before response.completed" if stream else "no output"}
    assert expected.get(api_kind, "no content, no tool call, no finish reason") in retries[0].reason
    assert len(requests) == 6 and all(bool(r.body.get("stream")) == stream for r in requests)
    assert result.usage.requests == 2  # the empty replies were not model turns
    assert not [
        event
        for event in result.events
        if isinstance(event, AssistantText) and not event.text.strip()
    ]


@pytest.mark.parametrize("api_kind", ["chat", "responses"])
def test_a_stream_cut_off_mid_reply_is_retried(api_kind: str, tmp_path: Path) -> None:
    first, final = actions(api_kind)
    script = [ScriptedTurn.cut_stream(), first, ScriptedTurn.cut_stream(), final]
    with ScriptedModelServer(script) as server:
        result = run_session(server, api_kind, True, tmp_path)
    assert result.status == "completed" and result.answer == "42", result.reason
    retries = [event for event in result.events if isinstance(event, ModelRetrying)]
    assert len(retries) == 2 and all("broke off" in event.reason for event in retries)


def test_empty_replies_past_the_retries_fail_as_model_server_unavailable(tmp_path: Path) -> None:
    retries = RetryPolicy.from_env().retries
    with ScriptedModelServer([ScriptedTurn.empty_stream()] * (retries + 1)) as server:
        with pytest.raises(ModelUnavailableError, match="model server unavailable") as raised:
            run_session(server, "chat", True, tmp_path)
        assert len(server.completion_requests()) == retries + 1
    assert "kernelagent model ps" in raised.value.hint
    (record,) = SessionStore(tmp_path / "home").list()
    assert record.status == "failed"
    assert "model server unavailable" in (record.reason or "")


def test_the_cli_shows_the_retries(tmp_path: Path) -> None:
    script = [ScriptedTurn.empty_stream(), ScriptedTurn.empty_stream(), *actions("chat")]
    with ScriptedModelServer(script) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kernelagent.cli",
                "run",
                "What is 6 * 7?",
                "--sandbox",
                "local",
                "--api",
                "chat",
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--notebook",
                str(tmp_path / "s.ipynb"),
                "--workspace",
                str(tmp_path / "ws"),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            env={**os.environ, **FAST_RETRIES, "OPENAI_API_KEY": "k", "COLUMNS": "200"},
        )
    assert done.returncode == 0, done.stderr
    assert "model server busy, retrying 1/5" in done.stderr
    assert "model server busy, retrying 2/5" in done.stderr


# --- what the SDK retries is not retried again, except for the model service --------


def new_conversation() -> Conversation:
    conversation = Conversation(system="s")
    conversation.add_user("hi")
    return conversation


async def turn_with_events(
    model: ChatCompletionsModel | ResponsesModel,
) -> tuple[str, list[ModelRetrying]]:
    events: list[ModelRetrying] = []
    with reporting_retries(events.append):
        turn = await model.turn(new_conversation(), [])
    return turn.text, events


async def test_503_is_left_to_the_sdk_for_other_servers() -> None:
    with ScriptedModelServer([ScriptedTurn.error(503), ScriptedTurn.say("ok")]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        with pytest.raises(ModelUnavailableError, match="503"):
            await turn_with_events(ChatCompletionsModel(client, "m"))
        await client.close()


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_model_service_clients_retry_502_503_504(status: int) -> None:
    with ScriptedModelServer([ScriptedTurn.error(status)] * 2 + [ScriptedTurn.say("ok")]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        retry_requests_for(client)
        text, events = await turn_with_events(ResponsesModel(client, "m"))
        await client.close()
    assert text == "ok" and [e.reason for e in events] == [f"the server answered {status}"] * 2


async def test_model_service_clients_retry_timeouts_and_refused_connections() -> None:
    with ScriptedModelServer(
        [ScriptedTurn.say("late", delay=1.0), ScriptedTurn.say("ok")]
    ) as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", max_retries=0, timeout=0.3
        )
        retry_requests_for(client)
        text, events = await turn_with_events(ChatCompletionsModel(client, "m", stream=False))
        await client.close()
    assert text == "ok" and [event.reason for event in events] == ["the request timed out"]

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    retry_requests_for(client)
    with pytest.raises(ModelUnavailableError, match="model server unavailable: cannot connect"):
        await turn_with_events(ChatCompletionsModel(client, "m"))
    await client.close()


async def test_a_server_that_comes_back_is_reached_on_a_later_try() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ScriptedModelServer([ScriptedTurn.say("back")], port=port)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    retry_requests_for(client)
    events: list[ModelRetrying] = []

    def start_on_second_retry(event: ModelRetrying) -> None:
        events.append(event)
        if event.retry == 2:
            server.start()

    model = ChatCompletionsModel(client, "m")
    try:
        with reporting_retries(start_on_second_retry):
            turn = await model.turn(new_conversation(), [])
    finally:
        server.stop()
        await client.close()
    assert turn.text == "back" and len(events) == 2


# --- the pre-flight check tolerates a busy server ---------------------------------


def silent_server() -> tuple[socket.socket, threading.Event]:
    """Accepts connections and reads requests, never answers: a server busy elsewhere."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    done = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(connection)
        for connection in held:
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    return listener, done


async def test_preflight_tolerates_a_busy_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "PREFLIGHT_TIMEOUT", 0.5)
    listener, done = silent_server()
    try:
        port = listener.getsockname()[1]
        await api.check_model_server(api.build_config(base_url=f"http://127.0.0.1:{port}/v1"), "k")
    finally:
        done.set()
        listener.close()


@pytest.mark.parametrize("status", [503, 504])
async def test_preflight_tolerates_a_server_that_is_loading(status: int) -> None:
    class Loading(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loading)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        await api.check_model_server(api.build_config(base_url=f"http://127.0.0.1:{port}/v1"), "k")
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_preflight_still_fails_fast_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelUnavailableError, match="cannot connect"):
        await api.check_model_server(api.build_config(base_url=f"http://127.0.0.1:{port}/v1"), "k")
