"""Build a Model adapter from command-line style settings."""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlparse

import openai

from kernelagent.agent.chat_model import ChatCompletionsModel
from kernelagent.agent.codeblock_model import CodeBlockModel
from kernelagent.agent.model import Model, ModelAuthError
from kernelagent.agent.responses_model import ResponsesModel
from kernelagent.agent.transport import retry_requests_for
from kernelagent.literals import ApiKind
from kernelagent.localmodel.registry import is_model_service_url

ModelApi = ApiKind

#: Sent to local servers that do not check keys; the SDK refuses to run without one.
LOCAL_PLACEHOLDER_KEY = "kernelagent-local"

_CLIENT_OPTIONS = ("timeout", "max_retries", "default_headers")


def make_model(
    api: ModelApi,
    model: str,
    base_url: str | None = None,
    api_key: str | None = None,
    **opts: Any,
) -> Model:
    """Make an adapter; ``opts`` go to the adapter (``stream``, ``supports_images``, ...),
    except ``timeout``, ``max_retries`` and ``default_headers``, which go to the client."""
    client_options = {name: opts.pop(name) for name in _CLIENT_OPTIONS if name in opts}
    service = is_model_service_url(base_url)
    if service:  # kernelagent's transport retries its own model service, with events
        client_options.setdefault("max_retries", 0)
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=resolve_api_key(api_key, base_url), **client_options
    )
    if service and client.max_retries == 0:
        retry_requests_for(client)
    if api == "responses":
        return ResponsesModel(client, model, **opts)
    if api == "chat":
        return ChatCompletionsModel(client, model, **opts)
    if api == "code-blocks":
        return CodeBlockModel.over_client(client, model, **opts)
    raise ValueError(f"unknown model api {api!r}: expected responses, chat or code-blocks")


def resolve_api_key(api_key: str | None, base_url: str | None) -> str:
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    effective_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if effective_url and is_loopback_url(effective_url):
        return LOCAL_PLACEHOLDER_KEY
    where = effective_url or "the OpenAI API"
    raise ModelAuthError(
        f"no API key for {where}",
        hint="set OPENAI_API_KEY or pass --api-key, or pass --base-url for a local server "
        "(e.g. http://127.0.0.1:8000/v1)",
    )


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
