"""Translate ``openai`` SDK exceptions into ModelError subclasses with a hint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai

from kernelagent.agent.model import (
    ModelAuthError,
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
    if isinstance(exc, openai.APIStatusError):
        return ModelError(
            f"{base_url}{endpoint} rejected the request ({exc.status_code}): {detail}",
            hint="the server does not accept this request: check --model, --api and model options",
        )
    return ModelError(f"model call failed: {_one_line(str(exc))}", hint="see the log for details")


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
