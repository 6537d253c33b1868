"""The model protocol and the neutral, serialisable conversation it works on.

The conversation is independent of any wire API, so a session can switch adapters
(Responses, Chat Completions, code blocks) and be stored in notebook metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from kernelagent.errors import KernelAgentError
from kernelagent.events import Usage


class ImagePart(BaseModel):
    media_type: str = "image/png"
    data_base64: str

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data_base64}"


class UserItem(BaseModel):
    type: Literal["user"] = "user"
    text: str
    images: list[ImagePart] = Field(default_factory=list)


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str
    """The raw JSON string exactly as the model sent it (may be malformed)."""


class AssistantItem(BaseModel):
    type: Literal["assistant"] = "assistant"
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    response_id: str | None = None
    """The Responses API id of the response that produced this item, if any."""


class ToolResultItem(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    output: str
    images: list[ImagePart] = Field(default_factory=list)


ConversationItem = Annotated[UserItem | AssistantItem | ToolResultItem, Field(discriminator="type")]


class Conversation(BaseModel):
    system: str
    items: list[ConversationItem] = Field(default_factory=list)

    def append(self, item: UserItem | AssistantItem | ToolResultItem) -> None:
        self.items.append(item)

    def add_user(self, text: str, images: list[ImagePart] | None = None) -> UserItem:
        item = UserItem(text=text, images=images or [])
        self.items.append(item)
        return item

    def add_assistant(self, turn: ModelTurn) -> AssistantItem:
        item = turn.to_item()
        self.items.append(item)
        return item

    def add_tool_result(
        self, call_id: str, output: str, images: list[ImagePart] | None = None
    ) -> ToolResultItem:
        item = ToolResultItem(call_id=call_id, output=output, images=images or [])
        self.items.append(item)
        return item

    def find_tool_call(self, call_id: str) -> ToolCall | None:
        for item in reversed(self.items):
            if isinstance(item, AssistantItem):
                for call in item.tool_calls:
                    if call.id == call_id:
                        return call
        return None

    def size(self) -> int:
        """Characters the model reads (text and tool output; images not counted)."""
        total = len(self.system)
        for item in self.items:
            if isinstance(item, (UserItem, AssistantItem)):
                total += len(item.text)
            if isinstance(item, AssistantItem):
                total += sum(len(call.arguments) for call in item.tool_calls)
            if isinstance(item, ToolResultItem):
                total += len(item.output)
        return total

    def compact(self, max_chars: int, keep_recent: int = 12, clip: int = 300) -> int:
        """Shorten older steps until the conversation fits ``max_chars``; returns how many
        items were shortened. The first instruction and the last ``keep_recent`` items stay
        whole; older tool outputs and texts keep their head, older images are dropped. The
        notebook still has everything."""
        shortened = 0
        first_user = next(
            (i for i, item in enumerate(self.items) if isinstance(item, UserItem)), -1
        )
        for index, item in enumerate(self.items[: max(0, len(self.items) - keep_recent)]):
            if self.size() <= max_chars:
                break
            if index == first_user:
                continue
            marker = "\n[... compacted: the full output is in the session notebook]"
            if isinstance(item, ToolResultItem) and (len(item.output) > clip or item.images):
                if not item.output.endswith(marker):
                    item.output = item.output[:clip] + marker
                item.images = []
                shortened += 1
            elif isinstance(item, (UserItem, AssistantItem)) and len(item.text) > clip:
                item.text = item.text[:clip] + "\n[... compacted]"
                shortened += 1
        return shortened

    def unanswered_calls(self) -> list[ToolCall]:
        """The last model turn's tool calls that have no result yet, in order."""
        answered = set()
        for item in reversed(self.items):
            if isinstance(item, ToolResultItem):
                answered.add(item.call_id)
            elif isinstance(item, AssistantItem):
                return [call for call in item.tool_calls if call.id not in answered]
        return []

    def tool_call_count(self) -> int:
        return sum(len(item.tool_calls) for item in self.items if isinstance(item, AssistantItem))


class ToolSpec(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    """A JSON schema."""


class ModelTurn(BaseModel):
    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    response_id: str | None = None

    def to_item(self) -> AssistantItem:
        return AssistantItem(
            text=self.text, tool_calls=list(self.tool_calls), response_id=self.response_id
        )


class ModelError(KernelAgentError):
    """A model call failed; ``message`` says what happened, ``hint`` what to do."""

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelAuthError(ModelError):
    """Missing or rejected API key (401/403)."""


class ModelUnavailableError(ModelError):
    """The server could not be reached or kept failing (connection, timeout, 5xx)."""


class ModelRateLimitError(ModelError):
    """The provider rate-limited the request (429) after the SDK's own retries."""


class ModelNotFoundError(ModelError):
    """The model name or the endpoint does not exist on the server (404)."""


class ModelContextError(ModelError):
    """The request is longer than the model's context: the conversation must shrink.
    ``requested`` and ``available`` are token counts when the server said them."""

    def __init__(
        self, message: str, hint: str = "", *, requested: int | None, available: int | None
    ) -> None:
        super().__init__(message, hint)
        self.requested = requested
        self.available = available

    def fitting_chars(self, size: int) -> int:
        """A conversation length (characters) that should fit, from one of ``size`` that
        did not: scaled by what the server said, else halved; with a margin."""
        if self.requested and self.available and self.requested > self.available:
            return int(size * self.available / self.requested * 0.85)
        return size // 2


def images_omitted_note(count: int) -> str:
    """Stands in for images sent to a model that cannot see them."""
    plural = "image" if count == 1 else "images"
    return f"[{count} {plural} omitted: this model does not accept images]"


TextDeltaCallback = Callable[[str], None]


@runtime_checkable
class Model(Protocol):
    name: str
    supports_images: bool

    async def turn(
        self,
        conversation: Conversation,
        tools: list[ToolSpec],
        on_text_delta: TextDeltaCallback | None = None,
        *,
        temperature: float | None = None,
    ) -> ModelTurn:
        """One model call. ``temperature`` overrides the sampling temperature for this
        call only (the loop raises it to get different code after a repeated failure);
        None leaves the adapter's or the server's default."""
        ...
