"""The running summary the model writes when a conversation outgrows its budget, over
the real openai client against the scripted server; clipping when that turn fails."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nbformat

from kernelagent.agent.compaction import (
    SUMMARY_HEADING,
    ModelSummaryCompactor,
    RunningSummary,
    older_span,
)
from kernelagent.agent.model import AssistantItem, Conversation, ToolCall, ToolResultItem
from kernelagent.agent.models_factory import make_model
from kernelagent.testing import ScriptedModelServer, ScriptedTurn


def long_conversation(steps: int, output_chars: int = 2_000) -> Conversation:
    conversation = Conversation(system="system")
    conversation.add_user("What is the total revenue?")
    for n in range(steps):
        call = ToolCall(id=f"c{n}", name="python", arguments=json.dumps({"code": f"x{n} = {n}"}))
        conversation.append(AssistantItem(text=f"step {n}", tool_calls=[call]))
        conversation.add_tool_result(f"c{n}", f"output {n} " + "y" * output_chars)
    return conversation


def paired(conversation: Conversation) -> bool:
    """Every tool result follows the call it answers."""
    called: set[str] = set()
    for item in conversation.items:
        if isinstance(item, AssistantItem):
            called |= {call.id for call in item.tool_calls}
        if isinstance(item, ToolResultItem) and item.call_id not in called:
            return False
    return True


def test_the_summary_replaces_older_steps_and_folds_into_the_next() -> None:
    summaries: list[RunningSummary] = []
    script = [
        ScriptedTurn.say("- x3 holds 3; revenue column is in cents"),
        ScriptedTurn.say("- still: revenue is in cents; x30 holds 30"),
    ]
    with ScriptedModelServer(script) as server:
        conversation = long_conversation(40)
        after_first: list[str] = []

        async def scenario() -> None:
            model = make_model("chat", "m", base_url=server.base_url, stream=False)
            compactor = ModelSummaryCompactor(model, on_summary=summaries.append)
            await compactor(conversation, 30_000)
            after_first.append(conversation.model_dump_json())
            assert conversation.size() <= 30_000 and paired(conversation)
            for n in range(40, 60):  # the conversation grows again
                call = ToolCall(id=f"c{n}", name="python", arguments="{}")
                conversation.append(AssistantItem(tool_calls=[call]))
                conversation.add_tool_result(f"c{n}", "z" * 2_000)
            await compactor(conversation, 30_000)
            await model.aclose()  # type: ignore[attr-defined]

        asyncio.run(scenario())
        first = Conversation.model_validate_json(after_first[0])
        summary = first.items[1]
        assert summary.type == "user" and summary.text.startswith(SUMMARY_HEADING)
        assert "revenue column is in cents" in summary.text
        assert first.items[0].text == "What is the total revenue?"
        first_request = json.dumps(server.completion_requests()[0].body)
        assert "output 3 " in first_request and '"tools"' not in first_request
        second_request = json.dumps(server.completion_requests()[1].body)
    assert "revenue column is in cents" in second_request  # the earlier summary is folded in
    assert [s.summaries for s in summaries] == [1, 2]
    assert summaries[1].items_summarised > summaries[0].items_summarised
    assert conversation.items[1].text.count(SUMMARY_HEADING) == 1 and paired(conversation)


def test_a_failed_summary_turn_clips_and_two_failures_stop_asking() -> None:
    script = [ScriptedTurn.python("print(1)"), ScriptedTurn.error(500), ScriptedTurn.say("x")]
    with ScriptedModelServer(script) as server:

        async def scenario() -> ModelSummaryCompactor:
            model = make_model("chat", "m", base_url=server.base_url, stream=False, max_retries=0)
            compactor = ModelSummaryCompactor(model)
            for _ in range(3):
                conversation = long_conversation(40)
                await compactor(conversation, 30_000)
                assert conversation.size() <= 30_000 and paired(conversation)
                assert "[... compacted" in conversation.model_dump_json()
            await model.aclose()  # type: ignore[attr-defined]
            return compactor

        compactor = asyncio.run(scenario())
        assert len(server.completion_requests()) == 2 and compactor.failures == 2


def test_the_span_never_splits_a_call_from_its_result() -> None:
    conversation = long_conversation(10, output_chars=10)
    start, end = older_span(conversation.items, keep_recent=5, recent_chars=10_000)
    assert start == 1 and conversation.items[end].type == "assistant"
    assert older_span(long_conversation(1).items, 12, 100) is None


async def test_a_turn_longer_than_the_servers_context_is_compacted_and_sent_again(
    docker_available: None, tmp_path: Path
) -> None:
    """Token-dense outputs (digits) can pass a server's context before the character
    budget says so: the server's "exceeds the available context size" (llama-server's
    words) makes the loop compact to what the server said fits, keep that budget, and send
    the turn again; the session completes and the notebook keeps every output."""
    from kernelagent import api

    limit = 11_000  # characters of a request the scripted server takes; 2 per "token"
    code = "print(''.join(str((i * 7) % 10) for i in range({n})))"
    turns = iter(
        [ScriptedTurn.python(code.format(n=3000 + n)) for n in range(4)]
        + [ScriptedTurn.final("done")]
    )
    sizes: list[tuple[int, bool]] = []

    def respond(body: dict) -> ScriptedTurn:
        text = json.dumps(body)
        if "running notes" in text:
            return ScriptedTurn.say("- four cells printed digits; nothing else was asked")
        sizes.append((len(text), len(text) > limit))
        if len(text) > limit:
            return ScriptedTurn.error(
                400,
                message=f"request ({len(text) // 2} tokens) exceeds the available context "
                f"size ({limit // 2} tokens), try increasing it",
            )
        return next(turns)

    with ScriptedModelServer(respond) as server:
        config = api.build_config(model="scripted-model", base_url=server.base_url)
        config.agent_memory = False
        result = await api.arun(
            "Print digits four times.",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "session.ipynb",
            config=config,
        )
    assert (result.status, result.answer) == ("completed", "done")
    rejected = [size for size, refused in sizes if refused]
    assert len(rejected) == 1, sizes
    after = sizes[[refused for _, refused in sizes].index(True) + 1 :]
    assert after and all(size <= limit for size, _ in after), sizes
    notebook = nbformat.read(result.notebook_path, as_version=4)
    outputs = [cell.outputs[0].text for cell in notebook.cells if cell.cell_type == "code"]
    assert [len(text.strip()) for text in outputs] == [3000, 3001, 3002, 3003]
