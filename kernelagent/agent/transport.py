"""Transport failures are not model turns: they are retried, with bounded exponential backoff.

A model adapter runs each model request through :func:`with_transport_retries`. What
counts as a transport failure, and not as something the model said:

* an **empty stream**: the server answered 200, then ended the stream with no content,
  no tool call and no finish reason (llama-cpp-python's server does this to a second
  client while it serves a first); the non-streamed equivalent is a reply with no
  choice or output and no finish reason. The adapters raise :class:`BrokenStreamError`;
* a stream that **broke off** (connection reset or timed out after the reply started);
  the adapters read streams inside :func:`stream_transport_errors`;
* for the kernelagent model service only (clients marked with :func:`retry_requests_for`,
  which ``make_model`` does and whose SDK retries it turns off): connection errors,
  timeouts and 502/503/504, e.g. while the service restarts a server that died.

Everything else the openai SDK already retries itself (connection errors, timeouts,
408/409/429/5xx, ``max_retries`` times) is not retried again here. Each retry is
reported as a :class:`~kernelagent.events.ModelRetrying` event to the listener the
session installs with :func:`reporting_retries`; when the retries run out the request
fails with :class:`~kernelagent.agent.model.ModelUnavailableError` ("model server
unavailable: ...").
"""

from __future__ import annotations

import asyncio
import os
import random
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import openai

from kernelagent.agent.model import ModelUnavailableError
from kernelagent.events import ModelRetrying

T = TypeVar("T")

RETRIES_ENV = "KERNELAGENT_MODEL_RETRIES"
RETRY_DELAY_ENV = "KERNELAGENT_MODEL_RETRY_DELAY"
#: Statuses a proxy or a loading/overloaded server answers; worth another try.
RETRY_STATUSES = frozenset({502, 503, 504})

RetryListener = Callable[[ModelRetrying], object]
_listener: ContextVar[RetryListener | None] = ContextVar("kernelagent_retry_listener", default=None)
_clients_we_retry: weakref.WeakSet[openai.AsyncOpenAI] = weakref.WeakSet()


class BrokenStreamError(ModelUnavailableError):
    """The reply was empty or broke off before it was complete: a transport failure."""

    def __init__(self, what: str) -> None:
        super().__init__(what, hint="the model server dropped the reply; it is retried")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is tried again.

    ``retries`` tries after the first; the n-th waits ``first_delay * 2**(n-1)`` seconds
    (at most ``max_delay``), +-20% so that sessions that failed together do not retry in
    lockstep. The defaults (5 retries, 1 s, 2 s, ... 16 s: ~31 s) outlast a model server
    that is restarted or still loading.
    """

    retries: int = 5
    first_delay: float = 1.0
    max_delay: float = 16.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The defaults, or ``$KERNELAGENT_MODEL_RETRIES`` / ``$KERNELAGENT_MODEL_RETRY_DELAY``."""
        try:
            retries = int(os.environ.get(RETRIES_ENV) or cls.retries)
            first_delay = float(os.environ.get(RETRY_DELAY_ENV) or cls.first_delay)
        except ValueError:
            raise ValueError(
                f"${RETRIES_ENV} must be a whole number and ${RETRY_DELAY_ENV} a number of seconds"
            ) from None
        return cls(retries=max(0, retries), first_delay=max(0.0, first_delay))

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base: float = min(self.max_delay, self.first_delay * 2.0 ** (retry - 1))
        return base * random.uniform(0.8, 1.2)


@contextmanager
def reporting_retries(listener: RetryListener) -> Iterator[None]:
    """Send the retries of model requests made inside the block (this task and the tasks
    it starts) to ``listener``. The session wraps its loop's run in it."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def retry_requests_for(client: openai.AsyncOpenAI) -> None:
    """Let this module retry connection errors, timeouts and 502/503/504 for ``client``.

    ``make_model`` calls it for clients of the kernelagent model service, which it makes
    with ``max_retries=0`` so that the SDK does not retry the same failures first.
    """
    _clients_we_retry.add(client)


def retries_requests_for(client: openai.AsyncOpenAI) -> bool:
    return client in _clients_we_retry


@contextmanager
def stream_transport_errors() -> Iterator[None]:
    """Read a reply stream in this block: a transport error while reading it (after the
    SDK handed the stream over, so the SDK will not retry it) is a broken stream."""
    try:
        yield
    except openai.APIConnectionError as error:  # APITimeoutError too
        raise BrokenStreamError(f"the reply stream broke off ({_cause(error)})") from error
    except Exception as error:
        if _is_http_transport_error(error):  # older SDKs let httpx's errors through
            raise BrokenStreamError(f"the reply stream broke off ({_cause(error)})") from error
        raise


async def with_transport_retries(
    client: openai.AsyncOpenAI,
    request: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy | None = None,
) -> T:
    """Run one model request (sending it and reading the whole reply), retrying transport
    failures. Called by the adapters' ``turn``, inside their SDK error translation.

    For a model service that takes one request at a time (llama-cpp-python's server),
    each attempt first waits for that service's request lock, so requests from every
    kernelagent process on the machine reach it one after another.
    """
    policy = policy or RetryPolicy.from_env()
    base_url = str(client.base_url)
    ours = retries_requests_for(client)
    for retry in range(policy.retries + 1):
        try:
            async with _one_request_gate(base_url):
                return await request()
        except Exception as error:
            reason = transient_reason(error, retry_sdk_errors=ours)
            if reason is None:
                raise
            if retry == policy.retries:
                raise ModelUnavailableError(
                    f"model server unavailable: {reason} ({policy.retries + 1} tries, {base_url})",
                    hint="the model server kept failing: check that it runs (`kernelagent model "
                    "ps` for a local model, and its log), then resume the session",
                ) from error
            delay = policy.delay(retry + 1)
            _notify(
                ModelRetrying(retry=retry + 1, retries=policy.retries, reason=reason, delay=delay)
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def transient_reason(error: BaseException, *, retry_sdk_errors: bool) -> str | None:
    """Why ``error`` is worth another try (a short phrase), or None when it is not."""
    if isinstance(error, BrokenStreamError):
        return error.message
    if not retry_sdk_errors:
        return None
    if isinstance(error, openai.APITimeoutError):
        return "the request timed out"
    if isinstance(error, openai.APIConnectionError):
        return f"cannot connect ({_cause(error)})"
    if isinstance(error, openai.APIStatusError) and error.status_code in RETRY_STATUSES:
        return f"the server answered {error.status_code}"
    return None


def _notify(event: ModelRetrying) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(event)


def _one_request_gate(base_url: str) -> AbstractAsyncContextManager[object]:
    from kernelagent.localmodel.registry import one_request_at_a_time

    gate = one_request_at_a_time(base_url)
    return gate if gate is not None else nullcontext()


def _is_http_transport_error(error: BaseException) -> bool:
    return any(
        cls.__name__ == "TransportError" and cls.__module__.split(".")[0] in ("httpx", "httpx2")
        for cls in type(error).__mro__
    )


def _cause(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    shown = cause if cause is not None and str(cause) else error
    text = " ".join(str(shown).split()) or type(shown).__name__
    return text if len(text) <= 160 else text[:159] + "…"
