"""Model adapters over the real openai SDK, talking HTTP to the scripted server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from kernelagent.agent.chat_model import ChatCompletionsModel
from kernelagent.agent.codeblock_model import CodeBlockModel, as_text_conversation, parse_reply
from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ImagePart,
    Model,
    ModelAuthError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelTurn,
    ModelUnavailableError,
    ToolCall,
    ToolResultItem,
    ToolSpec,
    UserItem,
)
from kernelagent.agent.models_factory import LOCAL_PLACEHOLDER_KEY, is_loopback_url, make_model
from kernelagent.agent.responses_model import ResponsesModel
from kernelagent.events import Usage
from kernelagent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn

TOOLS = [
    ToolSpec(
        name="python",
        description="Run a code cell.",
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string"}},
            "required": ["code"],
        },
    ),
    ToolSpec(
        name="shell",
        description="Run a shell command.",
        parameters={
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    ),
    ToolSpec(
        name="final_answer",
        description="Finish with an answer.",
        parameters={
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
        },
    ),
]
PIXEL = ImagePart(data_base64="iVBORw0KGgo=")


_open_clients: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _open_clients:
        await _open_clients.pop().close()


def tracked(client: openai.AsyncOpenAI) -> openai.AsyncOpenAI:
    _open_clients.append(client)
    return client


def client_for(server: ScriptedModelServer, **options: Any) -> openai.AsyncOpenAI:
    return tracked(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0, **options)
    )


def new_conversation(task: str = "Compute 6*7.") -> Conversation:
    conversation = Conversation(system="You are a careful data analyst.")
    conversation.add_user(task)
    return conversation


def usage(input_tokens: int, output_tokens: int, cached: int = 0) -> Usage:
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, cached_input_tokens=cached)


def last_body(server: ScriptedModelServer) -> dict[str, Any]:
    body = server.completion_requests()[-1].body
    assert isinstance(body, dict)
    return body


async def run_two_turns(
    model: Model, conversation: Conversation, deltas: list[str]
) -> list[ModelTurn]:
    first = await model.turn(conversation, TOOLS, deltas.append)
    conversation.add_assistant(first)
    conversation.add_tool_result(first.tool_calls[0].id, "42\n")
    second = await model.turn(conversation, TOOLS, deltas.append)
    conversation.add_assistant(second)
    return [first, second]


TWO_TURN_SCRIPT = [
    ScriptedTurn.python("print(6*7)", text="Let me compute it.", usage=usage(100, 10, 40)),
    ScriptedTurn.final("42", usage=usage(150, 5, 100)),
]


# --- Responses ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_responses_model_turns_and_usage(stream: bool) -> None:
    with ScriptedModelServer(TWO_TURN_SCRIPT) as server:
        model = ResponsesModel(client_for(server), "gpt-test", stream=stream)
        deltas: list[str] = []
        first, second = await run_two_turns(model, new_conversation(), deltas)
        body = last_body(server)

    assert first.text == "Let me compute it."
    assert "".join(deltas) == "Let me compute it."
    if stream:
        assert len(deltas) > 1
    assert first.tool_calls == [
        ToolCall(id="call_1", name="python", arguments='{"code": "print(6*7)"}')
    ]
    assert first.response_id == "resp_1"
    assert second.tool_calls[0].name == "final_answer"
    assert first.usage + second.usage == Usage(
        input_tokens=250, output_tokens=15, cached_input_tokens=140, requests=2
    )

    assert body["instructions"] == "You are a careful data analyst."
    assert body["stream"] is stream
    assert "previous_response_id" not in body
    assert body["tools"][0] == {
        "type": "function",
        "name": "python",
        "description": "Run a code cell.",
        "parameters": TOOLS[0].parameters,
        "strict": False,
    }
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Compute 6*7."}],
        },
        {"type": "message", "role": "assistant", "content": "Let me compute it."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "python",
            "arguments": '{"code": "print(6*7)"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "42\n"},
    ]


@pytest.mark.asyncio
async def test_responses_server_side_state_sends_only_new_items() -> None:
    with ScriptedModelServer(TWO_TURN_SCRIPT) as server:
        model = ResponsesModel(client_for(server), "gpt-test", server_side_state=True)
        await run_two_turns(model, new_conversation(), [])
        first_body, second_body = (request.body for request in server.completion_requests())

    assert "previous_response_id" not in first_body
    assert len(first_body["input"]) == 1
    assert second_body["previous_response_id"] == "resp_1"
    assert second_body["input"] == [
        {"type": "function_call_output", "call_id": "call_1", "output": "42\n"}
    ]


@pytest.mark.asyncio
async def test_responses_server_side_state_falls_back_to_full_resend() -> None:
    conversation = new_conversation()
    conversation.append(AssistantItem(text="from a chat model", tool_calls=[]))
    conversation.add_user("continue")
    with ScriptedModelServer([ScriptedTurn.say("ok")]) as server:
        model = ResponsesModel(client_for(server), "gpt-test", server_side_state=True)
        await model.turn(conversation, TOOLS)
        body = last_body(server)
    assert "previous_response_id" not in body
    assert len(body["input"]) == 3


@pytest.mark.asyncio
async def test_responses_images_follow_tool_results_as_a_user_message() -> None:
    conversation = new_conversation()
    conversation.items[0] = UserItem(text="Look at this", images=[PIXEL])
    conversation.append(
        AssistantItem(
            tool_calls=[
                ToolCall(id="call_a", name="python", arguments="{}"),
                ToolCall(id="call_b", name="python", arguments="{}"),
            ]
        )
    )
    conversation.add_tool_result("call_a", "plotted", images=[PIXEL])
    conversation.add_tool_result("call_b", "plotted again", images=[PIXEL])
    with ScriptedModelServer([ScriptedTurn.say("nice plot")] * 2) as server:
        await ResponsesModel(client_for(server), "m").turn(conversation, TOOLS)
        seeing = last_body(server)["input"]
        await ResponsesModel(client_for(server), "m", supports_images=False).turn(
            conversation, TOOLS
        )
        blind = last_body(server)["input"]

    data_url = "data:image/png;base64,iVBORw0KGgo="
    assert seeing[0]["content"][1] == {
        "type": "input_image",
        "image_url": data_url,
        "detail": "auto",
    }
    assert [item["type"] for item in seeing] == [
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    assert seeing[-1]["role"] == "user"
    assert [part["type"] for part in seeing[-1]["content"]] == [
        "input_text",
        "input_image",
        "input_image",
    ]

    assert len(blind) == 5
    assert "image omitted" in blind[0]["content"][0]["text"]
    assert "image omitted" in blind[-1]["output"]
    assert "input_image" not in json.dumps(blind)


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_malformed_arguments_pass_through_untouched(stream: bool) -> None:
    broken = '{"code": "print(1)'
    turn = ScriptedTurn(tool_calls=[ScriptedToolCall(name="python", arguments=broken)])
    with ScriptedModelServer([turn, turn]) as server:
        client = client_for(server)
        via_responses = await ResponsesModel(client, "m", stream=stream).turn(
            new_conversation(), TOOLS
        )
        via_chat = await ChatCompletionsModel(client, "m", stream=stream).turn(
            new_conversation(), TOOLS
        )
    assert via_responses.tool_calls[0].arguments == broken
    assert via_chat.tool_calls[0].arguments == broken


# --- Chat Completions -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_chat_model_turns_and_usage(stream: bool) -> None:
    with ScriptedModelServer(TWO_TURN_SCRIPT) as server:
        model = ChatCompletionsModel(client_for(server), "local-model", stream=stream)
        deltas: list[str] = []
        first, second = await run_two_turns(model, new_conversation(), deltas)
        body = last_body(server)

    assert first.text == "Let me compute it." == "".join(deltas)
    assert first.tool_calls == [
        ToolCall(id="call_1", name="python", arguments='{"code": "print(6*7)"}')
    ]
    assert first.response_id is None
    assert second.tool_calls[0].name == "final_answer"
    assert first.usage + second.usage == Usage(
        input_tokens=250, output_tokens=15, cached_input_tokens=140, requests=2
    )

    if stream:
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert "stream" not in body
    assert body["tools"][1] == {
        "type": "function",
        "function": {
            "name": "shell",
            "description": "Run a shell command.",
            "parameters": TOOLS[1].parameters,
        },
    }
    assert body["messages"] == [
        {"role": "system", "content": "You are a careful data analyst."},
        {"role": "user", "content": "Compute 6*7."},
        {
            "role": "assistant",
            "content": "Let me compute it.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "python", "arguments": '{"code": "print(6*7)"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42\n"},
    ]


@pytest.mark.asyncio
async def test_chat_model_streams_several_parallel_tool_calls() -> None:
    turn = ScriptedTurn(
        tool_calls=[
            ScriptedToolCall(name="python", arguments={"code": "a = 1\n" * 20}),
            ScriptedToolCall(name="shell", arguments={"command": "ls -la /tmp"}),
        ]
    )
    with ScriptedModelServer([turn]) as server:
        result = await ChatCompletionsModel(client_for(server), "m").turn(new_conversation(), TOOLS)
    assert [(call.id, call.name) for call in result.tool_calls] == [
        ("call_1", "python"),
        ("call_2", "shell"),
    ]
    assert json.loads(result.tool_calls[0].arguments) == {"code": "a = 1\n" * 20}
    assert result.text == ""


@pytest.mark.asyncio
async def test_chat_model_images_are_notes_unless_supported() -> None:
    conversation = Conversation(system="s", items=[UserItem(text="see", images=[PIXEL])])
    conversation.append(
        AssistantItem(tool_calls=[ToolCall(id="c1", name="python", arguments="{}")])
    )
    conversation.add_tool_result("c1", "figure", images=[PIXEL, PIXEL])
    with ScriptedModelServer([ScriptedTurn.say("ok")] * 2) as server:
        await ChatCompletionsModel(client_for(server), "m").turn(conversation, TOOLS)
        blind = last_body(server)["messages"]
        await ChatCompletionsModel(client_for(server), "m", supports_images=True).turn(
            conversation, TOOLS
        )
        seeing = last_body(server)["messages"]

    assert blind[1] == {
        "role": "user",
        "content": "see\n[1 image omitted: this model does not accept images]",
    }
    assert blind[3]["content"] == "figure\n[2 images omitted: this model does not accept images]"
    assert len(blind) == 4
    assert seeing[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert [message["role"] for message in seeing] == [
        "system",
        "user",
        "assistant",
        "tool",
        "user",
    ]
    assert [part["type"] for part in seeing[-1]["content"]] == ["text", "image_url", "image_url"]


# --- Code blocks ----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_codeblock_model_round_trip(stream: bool) -> None:
    script = [
        ScriptedTurn.say("I will compute it.\n```python\nprint(6*7)\n```\n", usage=usage(80, 12)),
        ScriptedTurn.say("```bash\nls data\n```", usage=usage(90, 4)),
        ScriptedTurn.say("The product is known.\nFINAL ANSWER: 42", usage=usage(99, 6)),
    ]
    with ScriptedModelServer(script) as server:
        model = CodeBlockModel.over_client(client_for(server), "tiny-model", stream=stream)
        conversation = new_conversation()
        deltas: list[str] = []
        first = await model.turn(conversation, TOOLS, deltas.append)
        conversation.add_assistant(first)
        conversation.add_tool_result(first.tool_calls[0].id, "42\n")
        second = await model.turn(conversation, TOOLS)
        conversation.add_assistant(second)
        conversation.add_tool_result(second.tool_calls[0].id, "")
        third = await model.turn(conversation, TOOLS)
        bodies = [request.body for request in server.completion_requests()]

    assert first.text == "I will compute it."
    assert first.tool_calls == [
        ToolCall(id="cb_1", name="python", arguments='{"code": "print(6*7)"}')
    ]
    assert "```python" in "".join(deltas)
    assert second.tool_calls == [
        ToolCall(id="cb_2", name="shell", arguments='{"command": "ls data"}')
    ]
    assert third.text == "The product is known."
    assert third.tool_calls == [
        ToolCall(id="cb_3", name="final_answer", arguments='{"answer": "42"}')
    ]
    assert (first.usage + second.usage + third.usage).output_tokens == 22

    assert all("tools" not in body for body in bodies)
    system = bodies[0]["messages"][0]
    assert (
        system["role"] == "system"
        and "FINAL ANSWER" in system["content"]
        and "```bash" in system["content"]
    )
    assert bodies[2]["messages"][1:] == [
        {"role": "user", "content": "Compute 6*7."},
        {"role": "assistant", "content": "I will compute it.\n\n```python\nprint(6*7)\n```"},
        {"role": "user", "content": "Output of your code:\n42\n"},
        {"role": "assistant", "content": "```bash\nls data\n```"},
        {"role": "user", "content": "Output of your command:\n(no output)"},
    ]


@pytest.mark.asyncio
async def test_codeblock_model_plain_text_has_no_tool_calls() -> None:
    with ScriptedModelServer([ScriptedTurn.say("Hmm, let me think about it.")]) as server:
        result = await CodeBlockModel.over_client(client_for(server), "m").turn(
            new_conversation(), TOOLS
        )
    assert result.tool_calls == []
    assert result.text == "Hmm, let me think about it."


@pytest.mark.parametrize(
    ("reply", "action", "payload", "prose"),
    [
        ("Plan:\n```python\nx = 1\n```\nOutput: 1", "python", "x = 1", "Plan:"),
        ("```py\nfirst()\n```\n```python\nsecond()\n```", "python", "first()", ""),
        ("```python3\nimport sys\n```", "python", "import sys", ""),
        ("```\nimport os\n```", "python", "import os", ""),
        ("```Python\nupper()\n```", "python", "upper()", ""),
        ("```sh\necho hi\n```", "shell", "echo hi", ""),
        ("```json\n{}\n```\n```python\nrun()\n```", "python", "run()", "```json\n{}\n```"),
        ("```python\nunclosed = True\n", "python", "unclosed = True", ""),
        ("```python print('inline')```", "python", "print('inline')", ""),
        ("````python\ns = '```'\n````", "python", "s = '```'", ""),
        ("Done.\n**Final Answer:** 42", "final_answer", "42", "Done."),
        (
            "FINAL ANSWER: the function is\n```python\ndef f(): ...\n```",
            "final_answer",
            "the function is\n```python\ndef f(): ...\n```",
            "",
        ),
        ("```\n1 2 3\n```\nFINAL ANSWER: 6", "final_answer", "6", "```\n1 2 3\n```"),
        ("```python\ncheck()\n```\nFINAL ANSWER: guess", "python", "check()", ""),
        ("Nothing to run here.", None, "", "Nothing to run here."),
        ("```text\njust text\n```", None, "", "```text\njust text\n```"),
        (
            "Expected output:\n```\n  region  revenue\n0   West   12.5\n```",
            None,
            "",
            "Expected output:\n```\n  region  revenue\n0   West   12.5\n```",
        ),
    ],
)
def test_parse_reply(reply: str, action: str | None, payload: str, prose: str) -> None:
    parsed = parse_reply(reply)
    assert (parsed.action, parsed.payload, parsed.prose) == (action, payload, prose)


@pytest.mark.parametrize(
    ("reply", "code", "answer"),
    [
        # an answer line after the block rides along; it is checked against the output later
        ("```python\ncheck()\n```\nFINAL ANSWER: guess", "check()", "guess"),
        # a FINAL ANSWER line inside the block would be a SyntaxError: the code part runs
        (
            "```python\nx = df.sum()\nprint(x)\nFINAL ANSWER: {x}\n```",
            "x = df.sum()\nprint(x)",
            "{x}",
        ),
        ("```python\nprint(2)\nFinal Answer: **2**\n```\nFINAL ANSWER: 3", "print(2)", "2"),
        # a comment or a string that mentions it is code, not an answer
        (
            "```python\n# final answer: below\nprint(1)\n```",
            "# final answer: below\nprint(1)",
            None,
        ),
        ("```python\nprint('FINAL ANSWER: 1')\n```", "print('FINAL ANSWER: 1')", None),
    ],
)
def test_an_answer_given_with_code_is_kept_apart_from_it(
    reply: str, code: str, answer: str | None
) -> None:
    parsed = parse_reply(reply)
    assert (parsed.action, parsed.payload, parsed.answer) == ("python", code, answer)


def test_a_block_holding_only_an_answer_line_is_the_answer() -> None:
    parsed = parse_reply("```python\nFINAL ANSWER: 42\n```")
    assert (parsed.action, parsed.payload) == ("final_answer", "42")


def test_text_conversation_renders_real_tool_calls_too() -> None:
    conversation = new_conversation()
    code_with_fence = 'print("```")'
    conversation.append(
        AssistantItem(
            text="",
            tool_calls=[
                ToolCall(
                    id="call_9", name="python", arguments=json.dumps({"code": code_with_fence})
                ),
                ToolCall(id="call_10", name="lookup", arguments="{not json"),
            ],
        )
    )
    conversation.add_tool_result("call_9", "```", images=[PIXEL])
    conversation.add_tool_result("call_10", "found")
    rendered = as_text_conversation(conversation, TOOLS)
    assistant = rendered.items[1]
    assert isinstance(assistant, AssistantItem) and assistant.tool_calls == []
    assert assistant.text == '````python\nprint("```")\n````\n\n```tool lookup\n{not json\n```'
    assert parse_reply(assistant.text).payload == code_with_fence
    result = rendered.items[2]
    assert isinstance(result, UserItem) and result.images == [PIXEL]
    assert rendered.items[3] == UserItem(text="Result of lookup:\nfound")


# --- Errors ---------------------------------------------------------------------


def adapters(client: openai.AsyncOpenAI) -> list[Model]:
    return [
        ResponsesModel(client, "m"),
        ResponsesModel(client, "m", stream=False),
        ChatCompletionsModel(client, "m"),
        ChatCompletionsModel(client, "m", stream=False),
        CodeBlockModel.over_client(client, "m"),
    ]


@pytest.mark.asyncio
async def test_wrong_key_is_model_auth_error() -> None:
    with ScriptedModelServer([], api_key="sk-right") as server:
        client = tracked(
            openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
        )
        for model in adapters(client):
            with pytest.raises(ModelAuthError) as raised:
                await model.turn(new_conversation(), TOOLS)
            assert "401" in raised.value.message and "OPENAI_API_KEY" in raised.value.hint


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("turn", "error_class"),
    [
        (ScriptedTurn.error(500, "boom"), ModelUnavailableError),
        (ScriptedTurn.error(503), ModelUnavailableError),
        (
            ScriptedTurn.error(429, "Rate limit reached", code="rate_limit_exceeded"),
            ModelRateLimitError,
        ),
        (
            ScriptedTurn.error(404, "The model `m` does not exist", code="model_not_found"),
            ModelNotFoundError,
        ),
        (ScriptedTurn.error(400, "context too long"), ModelError),
    ],
)
async def test_http_errors_map_to_model_errors(
    turn: ScriptedTurn, error_class: type[ModelError]
) -> None:
    with ScriptedModelServer([turn] * 5) as server:
        for model in adapters(client_for(server)):
            with pytest.raises(error_class) as raised:
                await model.turn(new_conversation(), TOOLS)
            assert "\n" not in raised.value.message
            assert raised.value.hint


@pytest.mark.asyncio
async def test_exhausted_script_is_a_clear_error() -> None:
    with ScriptedModelServer([ScriptedTurn.say("only one")]) as server:
        model = ResponsesModel(client_for(server), "m")
        await model.turn(new_conversation(), TOOLS)
        with pytest.raises(ModelUnavailableError, match="script ran out"):
            await model.turn(new_conversation(), TOOLS)


@pytest.mark.asyncio
async def test_connection_refused_and_timeout_are_unavailable() -> None:
    with ScriptedModelServer([ScriptedTurn.say("late", delay=1.0)]) as server:
        slow = ChatCompletionsModel(client_for(server, timeout=0.2), "m")
        with pytest.raises(ModelUnavailableError, match="timed out"):
            await slow.turn(new_conversation(), TOOLS)
        gone_url = server.base_url
    client = tracked(openai.AsyncOpenAI(base_url=gone_url, api_key="k", max_retries=0))
    with pytest.raises(ModelUnavailableError, match="cannot connect") as raised:
        await ResponsesModel(client, "m").turn(new_conversation(), TOOLS)
    assert "--base-url" in raised.value.hint


# --- Factory and types ----------------------------------------------------------


@pytest.mark.asyncio
async def test_make_model_uses_placeholder_key_for_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    script = [ScriptedTurn.say("r"), ScriptedTurn.say("c"), ScriptedTurn.say("FINAL ANSWER: cb")]
    with ScriptedModelServer(script) as server:
        models = [
            make_model(
                "responses", "m", server.base_url, None, max_retries=0, server_side_state=True
            ),
            make_model("chat", "m", server.base_url, None, stream=False),
            make_model("code-blocks", "m", server.base_url, None),
        ]
        assert [type(model) for model in models] == [
            ResponsesModel,
            ChatCompletionsModel,
            CodeBlockModel,
        ]
        turns = [await model.turn(new_conversation(), TOOLS) for model in models]
        for model in models:
            await model.aclose()  # type: ignore[attr-defined]
        keys = {request.headers["authorization"] for request in server.requests}
    assert [turn.text for turn in turns] == ["r", "c", ""]
    assert turns[2].tool_calls[0].arguments == '{"answer": "cb"}'
    assert keys == {f"Bearer {LOCAL_PLACEHOLDER_KEY}"}
    assert all(isinstance(model, Model) for model in models)


def test_make_model_without_key_for_remote_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelAuthError) as raised:
        make_model("responses", "gpt-test", None, None)
    assert "OPENAI_API_KEY" in raised.value.hint
    with pytest.raises(ModelAuthError):
        make_model("chat", "m", "https://api.example.com/v1", None)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    model = make_model("chat", "m", "https://api.example.com/v1", None)
    assert isinstance(model, ChatCompletionsModel) and model.client.api_key == "sk-env"


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://127.3.2.1/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://192.168.1.5:8000/v1", False),
        ("not a url", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_conversation_round_trips_through_json() -> None:
    conversation = Conversation(system="sys")
    conversation.add_user("look", images=[PIXEL])
    conversation.add_assistant(
        ModelTurn(
            text="running",
            tool_calls=[ToolCall(id="call_1", name="python", arguments='{"code": "1+')],
            usage=Usage(input_tokens=3),
            response_id="resp_1",
        )
    )
    conversation.add_tool_result(
        "call_1", "SyntaxError", images=[ImagePart(media_type="image/jpeg", data_base64="AA==")]
    )
    restored = Conversation.model_validate_json(conversation.model_dump_json())
    assert restored == conversation
    assert [type(item) for item in restored.items] == [UserItem, AssistantItem, ToolResultItem]
    assert restored.find_tool_call("call_1") == ToolCall(
        id="call_1", name="python", arguments='{"code": "1+'
    )


def test_model_error_carries_message_and_hint() -> None:
    error = ModelRateLimitError("rate limited", hint="wait")
    assert isinstance(error, ModelError)
    assert (error.message, error.hint, str(error)) == (
        "rate limited",
        "wait",
        "rate limited (wait)",
    )


@pytest.mark.asyncio
async def test_cancelling_a_streamed_turn_leaves_the_server_usable() -> None:
    slow_words = ScriptedTurn.say(" ".join(["word"] * 20), chunk_delay=0.05)
    with ScriptedModelServer([slow_words, ScriptedTurn.say("next")]) as server:
        model = ResponsesModel(client_for(server), "m")
        deltas: list[str] = []
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(model.turn(new_conversation(), TOOLS, deltas.append), 0.5)
        assert 0 < len(deltas) < 20
        assert (await model.turn(new_conversation(), TOOLS)).text == "next"
