"""Model adapter for the Chat Completions API (``POST /chat/completions``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ConversationItem,
    ImagePart,
    ModelTurn,
    TextDeltaCallback,
    ToolCall,
    ToolResultItem,
    ToolSpec,
    UserItem,
    images_omitted_note,
)
from kernelagent.agent.openai_adapter import OpenAIAdapter
from kernelagent.agent.transport import (
    BrokenStreamError,
    stream_transport_errors,
)
from kernelagent.events import Usage

ENDPOINT = "/chat/completions"


class ChatCompletionsModel(OpenAIAdapter):
    """Talks to ``/chat/completions`` with function tools."""

    endpoint = ENDPOINT

    async def plain_turn(self, params: dict[str, Any]) -> ModelTurn:
        return turn_from_completion(await self.client.chat.completions.create(**params))

    def request_params(self, conversation: Conversation, tools: list[ToolSpec]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.name,
            "messages": chat_messages(conversation, supports_images=self.supports_images),
        }
        if tools:
            params["tools"] = [chat_tool(tool) for tool in tools]
        if self.stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        if self.max_output_tokens is not None:
            params["max_completion_tokens"] = self.max_output_tokens
        params.update(self.extra_params)
        return params

    async def streamed_turn(
        self, params: dict[str, Any], on_text_delta: TextDeltaCallback | None
    ) -> ModelTurn:
        stream = await self.client.chat.completions.create(**params)
        texts: list[str] = []
        calls = _ToolCallAccumulator()
        usage = Usage(requests=1)
        finished = False
        with stream_transport_errors():
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:  # llama-server: in the last chunk
                        usage = usage_from_chat(chunk.usage)
                    for choice in chunk.choices:
                        finished = finished or choice.finish_reason is not None
                        _add_delta(choice.delta, texts, calls, on_text_delta)
        if not finished and not texts and not calls.started:
            raise BrokenStreamError(
                "empty reply stream (no content, no tool call, no finish reason)"
            )
        return ModelTurn(text="".join(texts), tool_calls=calls.finish(), usage=usage)


def _add_delta(
    delta: Any,
    texts: list[str],
    calls: _ToolCallAccumulator,
    on_text_delta: TextDeltaCallback | None,
) -> None:
    if delta is None:
        return
    if delta.content:
        texts.append(delta.content)
        if on_text_delta is not None:
            on_text_delta(delta.content)
    if delta.refusal:
        texts.append(delta.refusal)
    for call_delta in delta.tool_calls or []:
        calls.add(call_delta)


def chat_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def chat_messages(conversation: Conversation, *, supports_images: bool) -> list[dict[str, Any]]:
    """Convert a conversation to chat messages.

    Tool messages must directly follow their assistant message, so images of a run
    of tool results go into one user message after that run.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": conversation.system}]
    pending_images: list[ImagePart] = []

    def flush_images() -> None:
        if pending_images:
            content: list[dict[str, Any]] = [
                {"type": "text", "text": "Images produced by the tool calls above:"}
            ]
            content += [_image_part(image) for image in pending_images]
            messages.append({"role": "user", "content": content})
            pending_images.clear()

    items: list[ConversationItem] = conversation.items
    for item in items:
        if not isinstance(item, ToolResultItem):
            flush_images()
        if isinstance(item, UserItem):
            messages.append(_user_message(item, supports_images=supports_images))
        elif isinstance(item, AssistantItem):
            message: dict[str, Any] = {"role": "assistant", "content": item.text or None}
            if item.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in item.tool_calls
                ]
            elif not item.text:
                continue
            messages.append(message)
        else:
            output = item.output
            if item.images and supports_images:
                pending_images.extend(item.images)
            elif item.images:
                output += "\n" + images_omitted_note(len(item.images))
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    flush_images()
    return messages


def turn_from_completion(completion: Any) -> ModelTurn:
    """The turn in a non-streamed completion; BrokenStreamError for an empty reply."""
    text = ""
    tool_calls: list[ToolCall] = []
    choice = completion.choices[0] if completion.choices else None
    if choice is None or (
        choice.finish_reason is None
        and not choice.message.content
        and not choice.message.tool_calls
    ):
        raise BrokenStreamError("empty reply (no content, no tool call, no finish reason)")
    message = choice.message
    text = (message.content or "") + (message.refusal or "")
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is not None:
            tool_calls.append(
                ToolCall(id=call.id, name=function.name, arguments=function.arguments or "")
            )
    usage = usage_from_chat(completion.usage) if completion.usage is not None else Usage(requests=1)
    return ModelTurn(text=text, tool_calls=tool_calls, usage=usage)


def usage_from_chat(usage: Any) -> Usage:
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_input_tokens=(getattr(details, "cached_tokens", 0) or 0)
        if details is not None
        else 0,
        requests=1,
    )


class _PartialCall(BaseModel):
    id: str = ""
    name: str = ""
    arguments: str = ""


class _ToolCallAccumulator:
    """Joins streamed tool-call fragments, keyed by their ``index``."""

    def __init__(self) -> None:
        self._calls: list[_PartialCall] = []
        self._position_of_index: dict[int, int] = {}

    @property
    def started(self) -> bool:
        return bool(self._calls)

    def add(self, delta: Any) -> None:
        position = self._position_of_index.get(delta.index)
        # Some servers reuse index 0 for every call; a new id then starts a new call.
        if position is None or (
            delta.id and self._calls[position].id and delta.id != self._calls[position].id
        ):
            self._calls.append(_PartialCall())
            position = len(self._calls) - 1
            self._position_of_index[delta.index] = position
        call = self._calls[position]
        if delta.id:
            call.id = delta.id
        if delta.function is not None:
            if delta.function.name and not call.name:
                call.name = delta.function.name
            if delta.function.arguments:
                call.arguments += delta.function.arguments

    def finish(self) -> list[ToolCall]:
        return [
            ToolCall(id=call.id or f"call_{number}", name=call.name, arguments=call.arguments)
            for number, call in enumerate(self._calls, start=1)
        ]


def _user_message(item: UserItem, *, supports_images: bool) -> dict[str, Any]:
    if not item.images:
        return {"role": "user", "content": item.text}
    if not supports_images:
        return {"role": "user", "content": item.text + "\n" + images_omitted_note(len(item.images))}
    content: list[dict[str, Any]] = [{"type": "text", "text": item.text}]
    content += [_image_part(image) for image in item.images]
    return {"role": "user", "content": content}


def _image_part(image: ImagePart) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image.data_url}}
