"""The scripted server, driven by the real openai SDK over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from kernelagent.events import Usage
from kernelagent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    script = [
        ScriptedTurn.python("print('hi')", text="Let me check the data first."),
        ScriptedTurn.final(
            "42", usage=Usage(input_tokens=100, output_tokens=7, cached_input_tokens=60)
        ),
    ]
    with ScriptedModelServer(script) as running:
        yield running


_open_clients: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _open_clients:
        await _open_clients.pop().close()


def tracked(client: openai.AsyncOpenAI) -> openai.AsyncOpenAI:
    _open_clients.append(client)
    return client


def async_client(server: ScriptedModelServer, **options: Any) -> openai.AsyncOpenAI:
    return tracked(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0, **options)
    )


@pytest.mark.asyncio
async def test_responses_stream_helper_parses_every_event(server: ScriptedModelServer) -> None:
    client = async_client(server)
    tools: Any = [{"type": "function", "name": "python", "parameters": {}, "strict": False}]
    async with client.responses.stream(model="m", input="hi", tools=tools) as stream:
        event_types = [event.type async for event in stream]
        final = await stream.get_final_response()

    assert event_types[0] == "response.created"
    assert event_types[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ):
        assert expected in event_types
    assert final.id == "resp_1"
    assert final.output_text == "Let me check the data first."
    call = final.output[1]
    assert call.type == "function_call"
    assert (call.id, call.call_id, call.name) == ("fc_1", "call_1", "python")
    assert json.loads(call.arguments) == {"code": "print('hi')"}
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.asyncio
async def test_responses_non_streaming_with_usage_override(server: ScriptedModelServer) -> None:
    client = async_client(server)
    await client.responses.create(model="m", input="first")
    response = await client.responses.create(model="m", input="second", instructions="be brief")

    assert response.id == "resp_2"
    assert response.instructions == "be brief"
    assert response.output[0].type == "function_call"
    assert response.output[0].call_id == "call_2"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (100, 7)
    assert response.usage.input_tokens_details.cached_tokens == 60


@pytest.mark.asyncio
async def test_chat_streaming_with_usage_and_tool_calls(server: ScriptedModelServer) -> None:
    client = async_client(server)
    async with client.chat.completions.stream(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
    ) as stream:
        async for _ in stream:
            pass
        completion = await stream.get_final_completion()

    message = completion.choices[0].message
    assert message.content == "Let me check the data first."
    assert message.tool_calls is not None
    assert message.tool_calls[0].id == "call_1"
    assert json.loads(message.tool_calls[0].function.arguments) == {"code": "print('hi')"}
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0


@pytest.mark.asyncio
async def test_chat_stream_without_include_usage_sends_no_usage_chunk(
    server: ScriptedModelServer,
) -> None:
    client = async_client(server)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


@pytest.mark.asyncio
async def test_chat_non_streaming_and_models_endpoint(server: ScriptedModelServer) -> None:
    client = async_client(server)
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    completion = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}]
    )
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None and message.tool_calls[0].function.name == "final_answer"
    assert completion.usage is not None and completion.usage.completion_tokens == 7

    models = [model.id async for model in client.models.list()]
    assert models == ["scripted-model"]
    assert [request.turn_index for request in server.requests] == [0, 1, None]


@pytest.mark.asyncio
async def test_requests_are_recorded_with_headers_and_body(server: ScriptedModelServer) -> None:
    client = async_client(server)
    await client.responses.create(model="m", input="hello", stream=False)
    request = server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/responses")
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body == {"model": "m", "input": "hello", "stream": False}
    assert server.remaining_turns == 1


@pytest.mark.asyncio
async def test_raw_string_arguments_are_sent_verbatim() -> None:
    broken = '{"code": "print(1)'
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall(name="python", arguments=broken)])] * 2
    with ScriptedModelServer(script) as server:
        client = async_client(server)
        stream = await client.responses.create(model="m", input="x", stream=True)
        done = [
            event async for event in stream if event.type == "response.function_call_arguments.done"
        ]
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert done[0].arguments == broken
    tool_calls = completion.choices[0].message.tool_calls
    assert tool_calls is not None and tool_calls[0].function.arguments == broken


@pytest.mark.asyncio
async def test_api_key_is_checked() -> None:
    with ScriptedModelServer([ScriptedTurn.say("ok")], api_key="sk-right") as server:
        wrong = tracked(
            openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
        )
        with pytest.raises(openai.AuthenticationError) as raised:
            await wrong.responses.create(model="m", input="x")
        assert raised.value.status_code == 401
        assert (
            isinstance(raised.value.body, dict) and raised.value.body["code"] == "invalid_api_key"
        )

        right = tracked(
            openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-right", max_retries=0)
        )
        response = await right.responses.create(model="m", input="x")
        assert response.output_text == "ok"


@pytest.mark.asyncio
async def test_scripted_error_turns() -> None:
    script = [
        ScriptedTurn.error(429, "Rate limit reached", code="rate_limit_exceeded"),
        ScriptedTurn.error(500),
        ScriptedTurn(
            status_code=503, error_body={"error": {"message": "overloaded", "type": "server_error"}}
        ),
    ]
    with ScriptedModelServer(script) as server:
        client = async_client(server)
        with pytest.raises(openai.RateLimitError, match="Rate limit reached"):
            await client.responses.create(model="m", input="x")
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.InternalServerError, match="overloaded"):
            await client.responses.create(model="m", input="x", stream=True)


@pytest.mark.asyncio
async def test_exhausted_script_answers_500_and_records_the_request() -> None:
    with ScriptedModelServer([]) as server:
        client = async_client(server)
        with pytest.raises(openai.InternalServerError) as raised:
            await client.responses.create(model="m", input="x")
    assert "script ran out" in str(raised.value)
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "script_exhausted"
    assert len(server.requests) == 1 and server.requests[0].turn_index is None


@pytest.mark.asyncio
async def test_sdk_retry_consumes_the_next_turn() -> None:
    script = [
        ScriptedTurn.error(500, headers={"retry-after-ms": "1"}),
        ScriptedTurn.say("recovered"),
    ]
    with ScriptedModelServer(script) as server:
        client = tracked(openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=1))
        response = await client.responses.create(model="m", input="x")
    assert response.output_text == "recovered"
    assert len(server.completion_requests()) == 2


@pytest.mark.asyncio
async def test_responder_callable_builds_turns_from_the_request() -> None:
    def echo(body: dict[str, Any]) -> ScriptedTurn | None:
        if body.get("input") == "stop":
            return None
        return ScriptedTurn.say(f"you said {body.get('input')}")

    with ScriptedModelServer(echo) as server:
        client = async_client(server)
        response = await client.responses.create(model="m", input="hello")
        assert response.output_text == "you said hello"
        with pytest.raises(openai.InternalServerError, match="script ran out"):
            await client.responses.create(model="m", input="stop")


@pytest.mark.asyncio
async def test_delay_triggers_client_timeout() -> None:
    with ScriptedModelServer([ScriptedTurn.say("slow", delay=1.0)]) as server:
        client = async_client(server, timeout=0.2)
        with pytest.raises(openai.APITimeoutError):
            await client.responses.create(model="m", input="x")


def test_sync_client_and_unknown_path() -> None:
    with (
        ScriptedModelServer([ScriptedTurn.say("sync works")]) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        with client.responses.stream(model="m", input="x") as stream:
            assert stream.get_final_response().output_text == "sync works"
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="m", input="x")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


def test_ids_are_deterministic_across_endpoints() -> None:
    script = [
        ScriptedTurn(
            text="two calls",
            tool_calls=[
                ScriptedToolCall(name="python", arguments={"code": "1"}),
                ScriptedToolCall(name="shell"),
            ],
        ),
        ScriptedTurn.shell("ls"),
    ]
    with (
        ScriptedModelServer(script) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        response = client.responses.create(model="m", input="x")
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert [getattr(item, "id", None) for item in response.output] == ["msg_1", "fc_1", "fc_2"]
    assert [getattr(item, "call_id", None) for item in response.output] == [
        None,
        "call_1",
        "call_2",
    ]
    assert completion.id == "chatcmpl-1"
    tool_calls = completion.choices[0].message.tool_calls
    assert tool_calls is not None and tool_calls[0].id == "call_3"
