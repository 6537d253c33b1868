"""The running summary the model writes when a conversation outgrows its budget, over
the real openai client against the scripted server; clipping when that turn fails."""

from __future__ import annotations

import asyncio
import json

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
