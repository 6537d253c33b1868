"""JSON bodies and SSE events shaped like the OpenAI API's, built from a ScriptedTurn."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from kernelagent.events import Usage
from kernelagent.testing.scripted_turns import ScriptedTurn

CREATED_AT = 1_700_000_000
ARGUMENT_CHUNK_CHARS = 12


class IdAllocator:
    """Deterministic ids per prefix: ``call_1``, ``call_2``, ``resp_1``, ..."""

    def __init__(self) -> None:
        self._counters: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def next(self, prefix: str, separator: str = "_") -> str:
        with self._lock:
            self._counters[prefix] += 1
            return f"{prefix}{separator}{self._counters[prefix]}"


def estimate_usage(turn: ScriptedTurn, request_bytes: int) -> Usage:
    if turn.usage is not None:
        return turn.usage
    reply_chars = len(turn.text) + sum(len(call.arguments_json()) for call in turn.tool_calls)
    return Usage(input_tokens=max(1, request_bytes // 4), output_tokens=max(1, reply_chars // 4))


def text_chunks(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


def fixed_chunks(text: str, size: int = ARGUMENT_CHUNK_CHARS) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


# --- Responses API ---------------------------------------------------------------


def responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def responses_output_items(turn: ScriptedTurn, ids: IdAllocator) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if turn.text:
        items.append(
            {
                "id": ids.next("msg"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}
                ],
            }
        )
    for call in turn.tool_calls:
        items.append(
            {
                "id": ids.next("fc"),
                "type": "function_call",
                "status": "completed",
                "call_id": ids.next("call"),
                "name": call.name,
                "arguments": call.arguments_json(),
            }
        )
    return items


def response_object(
    *,
    response_id: str,
    request: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "completed_at": CREATED_AT if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model", "scripted-model"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []),
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": responses_usage(usage) if usage is not None else None,
        "user": None,
        "metadata": request.get("metadata") or {},
    }


def responses_stream_events(final: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The event sequence the real API emits while producing ``final``."""
    sequence = 0

    def event(event_type: str, **fields: Any) -> dict[str, Any]:
        nonlocal sequence
        payload = {"type": event_type, "sequence_number": sequence, **fields}
        sequence += 1
        return payload

    pending = {**final, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)

    for index, item in enumerate(final["output"]):
        if item["type"] == "message":
            yield from _message_events(event, index, item)
        elif item["type"] == "function_call":
            yield from _function_call_events(event, index, item)

    yield event("response.completed", response=final)


def _message_events(event: Any, index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    text = item["content"][0]["text"]
    item_id = item["id"]
    yield event(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "content": []},
    )
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield event(
        "response.content_part.added",
        item_id=item_id,
        output_index=index,
        content_index=0,
        part=empty_part,
    )
    for delta in text_chunks(text):
        yield event(
            "response.output_text.delta",
            item_id=item_id,
            output_index=index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )
    yield event(
        "response.output_text.done",
        item_id=item_id,
        output_index=index,
        content_index=0,
        text=text,
        logprobs=[],
    )
    yield event(
        "response.content_part.done",
        item_id=item_id,
        output_index=index,
        content_index=0,
        part=item["content"][0],
    )
    yield event("response.output_item.done", output_index=index, item=item)


def _function_call_events(event: Any, index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    item_id = item["id"]
    yield event(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "arguments": ""},
    )
    for delta in fixed_chunks(item["arguments"]):
        yield event(
            "response.function_call_arguments.delta",
            item_id=item_id,
            output_index=index,
            delta=delta,
        )
    yield event(
        "response.function_call_arguments.done",
        item_id=item_id,
        output_index=index,
        name=item["name"],
        arguments=item["arguments"],
    )
    yield event("response.output_item.done", output_index=index, item=item)


# --- Chat Completions API --------------------------------------------------------


def chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def chat_tool_calls(turn: ScriptedTurn, ids: IdAllocator) -> list[dict[str, Any]]:
    return [
        {
            "id": ids.next("call"),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json()},
        }
        for call in turn.tool_calls
    ]


def chat_completion(
    *, completion_id: str, model: str, text: str, tool_calls: list[dict[str, Any]], usage: Usage
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED_AT,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": chat_usage(usage),
    }


def chat_stream_chunks(
    *,
    completion_id: str,
    model: str,
    text: str,
    tool_calls: list[dict[str, Any]],
    usage: Usage,
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED_AT,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            payload["usage"] = None
        return payload

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for delta in text_chunks(text):
        yield chunk({"content": delta})
    for index, call in enumerate(tool_calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        for delta in fixed_chunks(call["function"]["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})
    yield chunk({}, finish_reason="tool_calls" if tool_calls else "stop")
    if include_usage:
        yield {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED_AT,
            "model": model,
            "system_fingerprint": None,
            "choices": [],
            "usage": chat_usage(usage),
        }


def chat_role_chunk(*, completion_id: str, model: str) -> dict[str, Any]:
    """The first chunk of a chat stream: the role, no content, no finish reason."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": CREATED_AT,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }


def chat_empty_completion(*, completion_id: str, model: str) -> dict[str, Any]:
    """A completion with nothing in it: no content, no tool call, no finish reason."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED_AT,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
