"""What the OpenAI adapters share: the client and the request options, a turn with the
SDK's errors translated and transport failures retried, and closing the client.

:class:`~kernelagent.agent.responses_model.ResponsesModel` and
:class:`~kernelagent.agent.chat_model.ChatCompletionsModel` say how to build a request
and read a reply, streamed or not; the code-blocks path is a Chat Completions adapter.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import openai
from typing_extensions import Self

from kernelagent.agent.model import Conversation, ModelTurn, TextDeltaCallback, ToolSpec
from kernelagent.agent.openai_errors import translated_openai_errors
from kernelagent.agent.transport import with_transport_retries


class OpenAIAdapter:
    """A model behind one OpenAI endpoint; subclasses set ``endpoint`` and say how to
    build the request (``request_params``) and read its reply (``plain_turn``,
    ``streamed_turn``)."""

    endpoint: ClassVar[str]

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        stream: bool = True,
        supports_images: bool = False,
        max_output_tokens: int | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.name = model
        self.stream = stream
        self.supports_images = supports_images
        self.max_output_tokens = max_output_tokens
        self.extra_params = dict(extra_params or {})

    def with_extra_params(self, **params: Any) -> Self:
        """A copy of this adapter (same client) that also sends ``params`` with each request."""
        twin = copy.copy(self)
        twin.extra_params = {**self.extra_params, **params}
        return twin

    async def turn(
        self,
        conversation: Conversation,
        tools: list[ToolSpec],
        on_text_delta: TextDeltaCallback | None = None,
        *,
        temperature: float | None = None,
    ) -> ModelTurn:
        params = self.request_params(conversation, tools)
        if temperature is not None:
            params["temperature"] = temperature
        with translated_openai_errors(self.client, self.name, self.endpoint):
            return await with_transport_retries(
                self.client, lambda: self._turn_once(params, on_text_delta)
            )

    async def _turn_once(
        self, params: dict[str, Any], on_text_delta: TextDeltaCallback | None
    ) -> ModelTurn:
        if self.stream:
            return await self.streamed_turn(params, on_text_delta)
        turn = await self.plain_turn(params)
        if on_text_delta is not None and turn.text:
            on_text_delta(turn.text)
        return turn

    async def aclose(self) -> None:
        """Close the HTTP client (the adapter made by make_model owns it)."""
        await self.client.close()

    def request_params(self, conversation: Conversation, tools: list[ToolSpec]) -> dict[str, Any]:
        raise NotImplementedError

    async def plain_turn(self, params: dict[str, Any]) -> ModelTurn:
        """One request without streaming."""
        raise NotImplementedError

    async def streamed_turn(
        self, params: dict[str, Any], on_text_delta: TextDeltaCallback | None
    ) -> ModelTurn:
        """One streamed request; text deltas go to ``on_text_delta`` as they arrive."""
        raise NotImplementedError
