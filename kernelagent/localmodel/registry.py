"""Which base URLs belong to the kernelagent model service, and what they can take.

Used by the model adapters' transport (one request at a time to a server that takes
one; retries while the service restarts a server) and by callers that want to know how
many sessions or attempts to run at once on a served model (:func:`parallel_slots`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

from kernelagent.localmodel.service_files import (
    FileLock,
    ServicePaths,
    ServiceState,
    all_states,
)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def find_service(
    base_url: str | None, root: Path | None = None
) -> tuple[ServicePaths, ServiceState] | None:
    """The service whose server answers at ``base_url`` (matched by loopback port)."""
    if not base_url:
        return None
    parsed = urlparse(base_url)
    if parsed.hostname not in _LOOPBACK_HOSTS or parsed.port is None:
        return None
    for paths, state in all_states(root):
        if state.port == parsed.port:
            return paths, state
    return None


def is_model_service_url(base_url: str | None) -> bool:
    return find_service(base_url) is not None


def parallel_slots(base_url: str | None) -> int | None:
    """How many requests the model service at ``base_url`` decodes at once; None when the
    URL is not served by it (then nothing is known about the server)."""
    found = find_service(base_url)
    return found[1].parallel_slots if found is not None else None


def one_request_at_a_time(base_url: str) -> AbstractAsyncContextManager[None] | None:
    """For a service that takes one request at a time, a lock to hold around a request
    (machine-wide: every kernelagent process waits its turn); otherwise None."""
    found = find_service(base_url)
    if found is None or found[1].parallel_slots != 1:
        return None
    return _holding(FileLock(found[0].requests_lock))


@asynccontextmanager
async def _holding(lock: FileLock) -> AsyncIterator[None]:
    while not lock.try_acquire():
        await asyncio.sleep(0.05)  # polled: a cancelled waiter leaves nothing behind
    try:
        yield
    finally:
        lock.release()
