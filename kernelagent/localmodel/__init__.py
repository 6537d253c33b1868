"""Local models for offline use: a catalog, a verified cache, and a machine-wide service.

For ``kernelagent run --model local`` (and the server extension, resume, benchmarks)::

    handle = await start_local_model()          # pulls on first use; a lease on the service
    try:
        config = build_config(model=handle.model_name, base_url=handle.base_url,
                              api=handle.recommended_api, ...)
        ...                                     # up to handle.parallel_slots requests at once
    finally:
        await handle.aclose()                   # releases the lease; the server stays warm

or ``async with await start_local_model("qwen2.5-coder-1.5b") as handle: ...``. One server
per model serves every process on the machine; it stops after an idle timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from typing_extensions import Self

from kernelagent.localmodel.backends import (
    NoModelServerError,
    ServeOptions,
    choose_backend,
)
from kernelagent.localmodel.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogModel,
    LocalApi,
    UnknownModelError,
    get_model,
)
from kernelagent.localmodel.catalog import recommended_api as _catalog_recommended_api
from kernelagent.localmodel.registry import parallel_slots
from kernelagent.localmodel.server import (
    InsufficientMemoryError,
    LlamaCppNotInstalledError,
    ServerStartError,
)
from kernelagent.localmodel.service import acquire
from kernelagent.localmodel.service_files import Lease, ServiceState
from kernelagent.localmodel.store import (
    ChecksumMismatchError,
    LocalModelError,
    ModelStore,
    NotGGUFError,
    ProgressCallback,
    PullError,
    PullProgress,
    ResolvedModel,
    models_dir,
)

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogModel",
    "ChecksumMismatchError",
    "InsufficientMemoryError",
    "LlamaCppNotInstalledError",
    "LocalApi",
    "LocalModelError",
    "LocalModelHandle",
    "ModelStore",
    "NoModelServerError",
    "NotGGUFError",
    "PullError",
    "PullProgress",
    "ServerStartError",
    "UnknownModelError",
    "get_model",
    "models_dir",
    "parallel_slots",
    "recommended_api",
    "start_local_model",
]


def recommended_api(name_or_path: str | None = None) -> LocalApi:
    """The kernelagent ``--api`` for a local model: ``chat`` or ``code-blocks``."""
    return _catalog_recommended_api(name_or_path or DEFAULT_MODEL)


@dataclass
class LocalModelHandle:
    """A lease on the machine's server for one model: point the agent at ``base_url``
    with ``model_name``; release it with :meth:`aclose` (or ``async with``)."""

    base_url: str
    model_name: str
    recommended_api: LocalApi
    n_ctx: int
    """Context per slot, in tokens."""
    model_path: Path
    parallel_slots: int
    """Requests the server decodes at once: run up to this many sessions or attempts
    concurrently (1: llama-cpp-python's server, requests go one after another)."""
    backend: str
    """``llama-server`` or ``llama-cpp-python``."""
    state: ServiceState
    lease: Lease

    @property
    def reports_streaming_usage(self) -> bool:
        """llama-server sends token usage in the last chunk of a stream; llama-cpp-python's
        server only in non-streamed replies."""
        return self.backend == "llama-server"

    def close(self) -> None:
        """Release the lease (idempotent). The server stops after its idle timeout once
        no session holds one."""
        self.lease.release()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def start_local_model(
    name_or_path: str | None = None,
    *,
    port: int | None = None,
    n_ctx: int | None = None,
    slots: int | None = None,
    progress: ProgressCallback | None = None,
    on_notice: Callable[[str], None] | None = None,
    store: ModelStore | None = None,
    label: str | None = None,
    idle_timeout: float | None = None,
    backend: str | None = None,
) -> LocalModelHandle:
    """A lease on the shared server of a local model (catalog name, default
    ``DEFAULT_MODEL``, or a .gguf path): pulls it if needed, starts the server if none
    runs, waits until it answers. ``port``, ``n_ctx`` (per slot), ``slots``,
    ``idle_timeout`` and ``backend`` apply when this call starts the server; ``label``
    names the lease in ``kernelagent model ps``. Raises LocalModelError subclasses whose
    messages say what to do."""
    store = store or ModelStore()
    resolved: ResolvedModel = store.resolve(name_or_path or DEFAULT_MODEL)
    if not resolved.exists:
        if on_notice is not None:
            on_notice(f"pulling {resolved.name} into {store.root} (first use)")
        await asyncio.to_thread(store.pull, resolved.name, progress, wait=True)
    options = ServeOptions.from_env(resolved.n_ctx, slots=slots, ctx=n_ctx)
    state, lease = await acquire(
        resolved,
        lambda: choose_backend(backend),
        options,
        label=label,
        port=port,
        idle_timeout=idle_timeout,
        on_notice=on_notice,
        root=store.root,
    )
    return LocalModelHandle(
        base_url=state.base_url,
        model_name=state.model,
        recommended_api=resolved.api,
        n_ctx=state.ctx_per_slot,
        model_path=resolved.path,
        parallel_slots=state.parallel_slots,
        backend=state.backend,
        state=state,
        lease=lease,
    )
