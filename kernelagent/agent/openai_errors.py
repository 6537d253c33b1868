"""Translate ``openai`` SDK exceptions into ModelError subclasses with a hint."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import openai

from kernelagent.agent.model import (
    ModelAuthError,
    ModelContextError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelUnavailableError,
)


@contextmanager
def translated_openai_errors(
    client: openai.AsyncOpenAI, model: str, endpoint: str
) -> Iterator[None]:
    """Re-raise SDK errors from the block as ModelError (the SDK has already retried)."""
    try:
        yield
    except openai.OpenAIError as exc:
        raise to_model_error(
            exc, base_url=str(client.base_url), model=model, endpoint=endpoint
        ) from exc


def to_model_error(
    exc: openai.OpenAIError, *, base_url: str, model: str, endpoint: str
) -> ModelError:
    detail = _server_message(exc)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return ModelAuthError(
            f"{base_url} rejected the API key ({exc.status_code}): {detail}",
            hint="set OPENAI_API_KEY (or --api-key) to a valid key for this server, "
            "or pass --base-url",
        )
    if isinstance(exc, openai.RateLimitError):
        if "quota" in detail.lower():
            hint = "the account is out of quota: check billing, or use another key or model"
        else:
            hint = "wait a minute and resume, or use a model with a higher rate limit"
        return ModelRateLimitError(f"rate limited by {base_url} (429): {detail}", hint=hint)
    if isinstance(exc, openai.NotFoundError):
        return ModelNotFoundError(
            f"{base_url}{endpoint} answered 404 for model {model!r}: {detail}",
            hint="check --model (GET /models lists what the server has); if the server has no "
            f"{endpoint} endpoint, try another --api (responses, chat or code-blocks)",
        )
    if isinstance(exc, openai.APITimeoutError):
        return ModelUnavailableError(
            f"model request to {base_url} timed out",
            hint="the server is slow or overloaded: retry, or raise the model timeout",
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailableError(
            f"cannot connect to {base_url}: {_cause(exc)}",
            hint="is the model server running? check --base-url and the network",
        )
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return ModelUnavailableError(
            f"{base_url} failed with {exc.status_code}: {detail}",
            hint="the model server kept failing after retries: try again later",
        )
    if isinstance(exc, openai.APIStatusError) and (found := context_overflow(detail)):
        requested, available = found
        return ModelContextError(
            f"the request is longer than the context of {model!r} at {base_url}: {detail}",
            hint="the conversation is compacted to fit and the turn sent again; if this "
            "persists, serve the model with a larger context",
            requested=requested,
            available=available,
        )
    if isinstance(exc, openai.APIStatusError):
        return ModelError(
            f"{base_url}{endpoint} rejected the request ({exc.status_code}): {detail}",
            hint="the server does not accept this request: check --model, --api and model options",
        )
    return ModelError(f"model call failed: {_one_line(str(exc))}", hint="see the log for details")


_OVERFLOW_PATTERNS = (
    # llama.cpp's llama-server
    re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens"),
    # OpenAI and vLLM: "maximum context length is 8192 tokens ... resulted in 9000 tokens"
    re.compile(r"maximum context length is (\d+) tokens.*?(\d+) tokens", re.IGNORECASE),
)
_OVERFLOW_WORDS = ("context_length_exceeded", "context length", "context size", "context window")


def context_overflow(detail: str) -> tuple[int | None, int | None] | None:
    """(requested, available) tokens when ``detail`` says the request is longer than the
    model's context (either may be None when not said); None when it says something else."""
    for number, pattern in enumerate(_OVERFLOW_PATTERNS):
        if match := pattern.search(detail):
            first, second = int(match.group(1)), int(match.group(2))
            return (first, second) if number == 0 else (second, first)
    if any(word in detail.lower() for word in _OVERFLOW_WORDS) and "exceed" in detail.lower():
        return None, None
    return None


def _server_message(exc: openai.OpenAIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return _one_line(body["message"])
    if isinstance(body, str) and body:
        return _one_line(body)
    return _one_line(getattr(exc, "message", None) or str(exc))


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return _one_line(str(cause)) if cause is not None and str(cause) else _one_line(str(exc))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
