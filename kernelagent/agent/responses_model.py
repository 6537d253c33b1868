"""Model adapter for the OpenAI Responses API (``POST /responses``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ConversationItem,
    ImagePart,
    ModelError,
    ModelRateLimitError,
    ModelTurn,
    ModelUnavailableError,
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

ENDPOINT = "/responses"


class ResponsesModel(OpenAIAdapter):
    """Talks to ``/responses``; optionally keeps state server-side via ``previous_response_id``."""

    endpoint = ENDPOINT

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        stream: bool = True,
        server_side_state: bool = False,
        supports_images: bool = True,
        max_output_tokens: int | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            client,
            model,
            stream=stream,
            supports_images=supports_images,
            max_output_tokens=max_output_tokens,
            extra_params=extra_params,
        )
        self.server_side_state = server_side_state

    async def plain_turn(self, params: dict[str, Any]) -> ModelTurn:
        response = await self.client.responses.create(**params)
        if not response.output and response.status not in ("completed", "incomplete", "failed"):
            raise BrokenStreamError(f"empty response ({response.status or 'no status'}, no output)")
        return turn_from_response(response)

    def request_params(self, conversation: Conversation, tools: list[ToolSpec]) -> dict[str, Any]:
        items: list[ConversationItem] = conversation.items
        previous_response_id: str | None = None
        if self.server_side_state:
            anchor = _last_response_index(items)
            if anchor is not None:
                anchored = items[anchor]
                assert isinstance(anchored, AssistantItem)
                previous_response_id = anchored.response_id
                items = items[anchor + 1 :]
        params: dict[str, Any] = {
            "model": self.name,
            "instructions": conversation.system,
            "input": responses_input(items, supports_images=self.supports_images),
            "stream": self.stream,
        }
        if tools:
            params["tools"] = [responses_tool(tool) for tool in tools]
        if previous_response_id is not None:
            params["previous_response_id"] = previous_response_id
        if self.max_output_tokens is not None:
            params["max_output_tokens"] = self.max_output_tokens
        params.update(self.extra_params)
        return params

    async def streamed_turn(
        self, params: dict[str, Any], on_text_delta: TextDeltaCallback | None
    ) -> ModelTurn:
        stream = await self.client.responses.create(**params)
        finished_items: dict[int, Any] = {}
        streamed_text: list[str] = []
        final: Any = None
        with stream_transport_errors():
            async with stream:
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        streamed_text.append(event.delta)
                        if on_text_delta is not None:
                            on_text_delta(event.delta)
                    elif event.type == "response.output_item.done":
                        finished_items[event.output_index] = event.item
                    elif event.type in ("response.completed", "response.incomplete"):
                        final = event.response
                    elif event.type == "response.failed":
                        raise _failure_error(event.response.error)
                    elif event.type == "error":
                        raise _failure_error(event)
        if final is None:
            raise BrokenStreamError("the stream ended before response.completed")
        output = list(final.output or []) or [
            finished_items[index] for index in sorted(finished_items)
        ]
        turn = _turn_from_output(output, final.id, final.usage)
        if not turn.text and streamed_text:
            turn.text = "".join(streamed_text)
        return turn


def responses_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": False,
    }


def responses_input(
    items: list[ConversationItem], *, supports_images: bool
) -> list[dict[str, Any]]:
    """Convert conversation items to Responses input items.

    ``function_call_output`` is text only, so images of a run of tool results are
    sent in one user message right after that run.
    """
    converted: list[dict[str, Any]] = []
    pending_images: list[ImagePart] = []

    def flush_images() -> None:
        if pending_images:
            content = [{"type": "input_text", "text": "Images produced by the tool calls above:"}]
            content += [_input_image(image) for image in pending_images]
            converted.append({"type": "message", "role": "user", "content": content})
            pending_images.clear()

    for item in items:
        if not isinstance(item, ToolResultItem):
            flush_images()
        if isinstance(item, UserItem):
            converted.append(_user_message(item, supports_images=supports_images))
        elif isinstance(item, AssistantItem):
            if item.text:
                converted.append({"type": "message", "role": "assistant", "content": item.text})
            for call in item.tool_calls:
                converted.append(
                    {
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.name,
                        "arguments": call.arguments,
                    }
                )
        else:
            output = item.output
            if item.images and supports_images:
                pending_images.extend(item.images)
            elif item.images:
                output += "\n" + images_omitted_note(len(item.images))
            converted.append(
                {"type": "function_call_output", "call_id": item.call_id, "output": output}
            )
    flush_images()
    return converted


def turn_from_response(response: Any) -> ModelTurn:
    return _turn_from_output(list(response.output or []), response.id, response.usage)


def usage_from_responses(usage: Any) -> Usage:
    if usage is None:
        return Usage(requests=1)
    details = getattr(usage, "input_tokens_details", None)
    return Usage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cached_input_tokens=(getattr(details, "cached_tokens", 0) or 0)
        if details is not None
        else 0,
        requests=1,
    )


def _turn_from_output(output: list[Any], response_id: str, usage: Any) -> ModelTurn:
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for item in output:
        if item.type == "message":
            for content in item.content:
                if content.type == "output_text":
                    texts.append(content.text)
                elif content.type == "refusal":
                    texts.append(content.refusal)
        elif item.type == "function_call":
            tool_calls.append(ToolCall(id=item.call_id, name=item.name, arguments=item.arguments))
    return ModelTurn(
        text="".join(texts),
        tool_calls=tool_calls,
        usage=usage_from_responses(usage),
        response_id=response_id,
    )


def _user_message(item: UserItem, *, supports_images: bool) -> dict[str, Any]:
    text = item.text
    if item.images and not supports_images:
        text += "\n" + images_omitted_note(len(item.images))
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    if supports_images:
        content += [_input_image(image) for image in item.images]
    return {"type": "message", "role": "user", "content": content}


def _input_image(image: ImagePart) -> dict[str, Any]:
    return {"type": "input_image", "image_url": image.data_url, "detail": "auto"}


def _last_response_index(items: list[ConversationItem]) -> int | None:
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if isinstance(item, AssistantItem) and item.response_id:
            return index
    return None


def _failure_error(error: Any) -> ModelError:
    code = str(getattr(error, "code", None) or "")
    message = " ".join(str(getattr(error, "message", None) or "the response failed").split())
    if "rate_limit" in code:
        return ModelRateLimitError(f"rate limited: {message}", hint="wait a minute and resume")
    if code in ("server_error", "") or "timeout" in code:
        return ModelUnavailableError(f"the response failed: {message}", hint="try again later")
    return ModelError(
        f"the response failed ({code}): {message}", hint="check the model options and input"
    )
