"""Keeping a long conversation within the context budget.

:func:`clip_conversation` shortens older steps to their first characters (the notebook
keeps them whole). :class:`ModelSummaryCompactor` asks the model, in one bounded turn
with no tools, to write a running summary of the older steps, which replaces them in the
conversation (so it is checkpointed with it and restored on resume and continue); an
earlier summary is among the older steps and is folded into the new one. When the
summary turn fails, it clips instead, and after ``max_failures`` failures it only clips.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kernelagent.agent.chat_model import ChatCompletionsModel
from kernelagent.agent.codeblock_model import CodeBlockModel
from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ConversationItem,
    Model,
    ModelTurn,
    ToolResultItem,
    UserItem,
)

log = logging.getLogger(__name__)

Compactor = Callable[[Conversation, int], Awaitable[None]]
"""Makes the conversation fit ``max_chars`` (called by the loop before a model turn)."""

SUMMARY_HEADING = "[Running summary of the earlier steps, written by you"

SUMMARY_SYSTEM = """\
You keep the running notes of a data analysis session in a Jupyter kernel. You are given
the older part of the session (the task, code cells, their outputs, and possibly an
earlier summary). Write a summary that lets the analyst carry on without them:
- the data: files, how they were read, columns, units, quirks found;
- the variables defined in the kernel that are still useful, and what they hold;
- results computed so far, with their exact numbers;
- what failed and why, so it is not tried again;
- what remains to do.
Reply with the summary only, as short bullet points (at most {words} words). Do not call
tools, do not write new code to run."""


async def clip_conversation(conversation: Conversation, max_chars: int) -> None:
    conversation.compact(max_chars)


@dataclass
class RunningSummary:
    text: str
    items_summarised: int
    summaries: int


class ModelSummaryCompactor:
    def __init__(
        self,
        model: Model,
        *,
        on_turn: Callable[[ModelTurn], None] | None = None,
        on_summary: Callable[[RunningSummary], None] | None = None,
        keep_recent: int = 12,
        summary_chars: int = 3_000,
        timeout: float = 300.0,
        max_failures: int = 2,
    ) -> None:
        self.model = model
        self.on_turn = on_turn or (lambda turn: None)
        """Hears the summary turn (for usage accounting)."""
        self.on_summary = on_summary or (lambda summary: None)
        self.keep_recent = keep_recent
        self.summary_chars = summary_chars
        self.timeout = timeout
        self.max_failures = max_failures
        self.failures = 0
        self.summaries = 0

    async def __call__(self, conversation: Conversation, max_chars: int) -> None:
        span = older_span(conversation.items, self.keep_recent, max_chars // 2)
        if self.failures < self.max_failures and span is not None:
            if await self._summarise(conversation, span, max_chars):
                self.failures = 0
            else:
                self.failures += 1
        if conversation.size() > max_chars:
            conversation.compact(max_chars)

    async def _summarise(
        self, conversation: Conversation, span: tuple[int, int], max_chars: int
    ) -> bool:
        start, end = span
        older = conversation.items[start:end]
        request = Conversation(
            system=SUMMARY_SYSTEM.format(words=self.summary_chars // 7),
            items=[UserItem(text=transcript(conversation, older, max(4_000, max_chars - 4_000)))],
        )
        try:
            turn = await asyncio.wait_for(ask_without_tools(self.model, request), self.timeout)
        except Exception as error:  # the model is down, refused, too slow: clip instead
            log.info("kernelagent: the summary turn failed (%s); clipping instead", error)
            return False
        self.on_turn(turn)
        text = turn.text.strip()
        if turn.tool_calls or not text:
            return False
        text = text[: self.summary_chars]
        self.summaries += 1
        summarised = len(older) + previous_count(older)
        item = UserItem(
            text=f"{SUMMARY_HEADING} ({summarised} items; the notebook has every cell):]\n{text}"
        )
        conversation.items[start:end] = [item]
        self.on_summary(RunningSummary(text, summarised, self.summaries))
        return True


def older_span(
    items: list[ConversationItem], keep_recent: int, recent_chars: int
) -> tuple[int, int] | None:
    """[start, end) of the items to summarise: after the first instruction, before the
    recent ones (at most ``keep_recent`` items and ``recent_chars`` characters, so the
    next summary is needed only after as much again), never splitting a tool call from
    its result."""
    first = next((i for i, item in enumerate(items) if isinstance(item, UserItem)), -1)
    start = first + 1
    end, kept = len(items), 0
    while end - 1 > start and len(items) - end < keep_recent:
        kept += item_chars(items[end - 1])
        if kept > recent_chars and len(items) - end >= 2:
            break
        end -= 1
    while start < end < len(items) and isinstance(items[end], ToolResultItem):
        end -= 1
    if end - start < 2:
        return None
    return start, end


def item_chars(item: ConversationItem) -> int:
    if isinstance(item, ToolResultItem):
        return len(item.output)
    if isinstance(item, AssistantItem):
        return len(item.text) + sum(len(call.arguments) for call in item.tool_calls)
    return len(item.text)


def previous_count(items: list[ConversationItem]) -> int:
    """Items an earlier summary among ``items`` stood for (besides itself)."""
    for item in items:
        if isinstance(item, UserItem) and item.text.startswith(SUMMARY_HEADING):
            head = item.text[len(SUMMARY_HEADING) :].lstrip(" (")
            number = head.split(" ", 1)[0]
            return int(number) - 1 if number.isdigit() else 0
    return 0


def transcript(conversation: Conversation, items: list[ConversationItem], budget: int) -> str:
    """The items as text, each clipped so that together they fit ``budget`` characters."""
    task = next((i.text for i in conversation.items if isinstance(i, UserItem)), "")
    each = max(300, budget // max(1, len(items)))
    lines = [f"The task: {_clip(task, 2_000)}", "", "The older steps:"]
    for item in items:
        if isinstance(item, UserItem):
            lines.append(f"[user] {_clip(item.text, each)}")
        elif isinstance(item, AssistantItem):
            calls = "".join(f"\n  {call.name}: {call.arguments}" for call in item.tool_calls)
            lines.append(f"[you] {_clip(item.text + calls, each)}")
        else:
            lines.append(f"[output] {_clip(item.output, each)}")
    return "\n".join(lines)[: budget + 2_500]


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} [...] {text[-half:]}"


async def ask_without_tools(model: Model, conversation: Conversation) -> ModelTurn:
    """One turn with no tools; a code-block model is asked plainly, without its protocol."""
    if isinstance(model, CodeBlockModel):
        return await ChatCompletionsModel.turn(model, conversation, [])
    return await model.turn(conversation, [])
