"""Local models for offline use: a catalog, a verified cache, and a llama.cpp server.

For ``kernelagent run --model local``::

    handle = await start_local_model()          # pulls on first use, then serves
    try:
        config = build_config(model=handle.model_name, base_url=handle.base_url,
                              api=handle.recommended_api, ...)
        ...
    finally:
        await handle.aclose()

or ``async with await start_local_model("qwen2.5-coder-1.5b") as handle: ...``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kernelagent.localmodel.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogModel,
    LocalApi,
    UnknownModelError,
    get_model,
)
from kernelagent.localmodel.catalog import recommended_api as _catalog_recommended_api
from kernelagent.localmodel.server import (
    InsufficientMemoryError,
    LlamaCppNotInstalledError,
    LocalModelServer,
    ServerStartError,
)
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
    "CATALOG", "DEFAULT_MODEL", "CatalogModel", "ChecksumMismatchError",
    "InsufficientMemoryError", "LlamaCppNotInstalledError", "LocalApi", "LocalModelError",
    "LocalModelHandle", "LocalModelServer", "ModelStore", "NotGGUFError", "PullError",
    "PullProgress", "ServerStartError", "UnknownModelError", "get_model", "models_dir",
    "recommended_api", "start_local_model",
]


def recommended_api(name_or_path: str | None = None) -> LocalApi:
    """The kernelagent ``--api`` for a local model: ``chat`` or ``code-blocks``."""
    return _catalog_recommended_api(name_or_path or DEFAULT_MODEL)


@dataclass
class LocalModelHandle:
    """A running local model: point the agent at ``base_url`` with ``model_name``."""

    base_url: str
    model_name: str
    recommended_api: LocalApi
    n_ctx: int
    model_path: Path
    server: LocalModelServer

    async def aclose(self) -> None:
        await self.server.astop()

    def close(self) -> None:
        self.server.stop()

    async def __aenter__(self) -> LocalModelHandle:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def start_local_model(
    name_or_path: str | None = None,
    *,
    port: int | None = None,
    n_ctx: int | None = None,
    progress: ProgressCallback | None = None,
    on_notice: Callable[[str], None] | None = None,
    store: ModelStore | None = None,
) -> LocalModelHandle:
    """Resolve (catalog name, default ``DEFAULT_MODEL``, or a .gguf path), pull if needed,
    start the server and wait until it answers. Raises LocalModelError subclasses whose
    messages say what to do."""
    store = store or ModelStore()
    resolved: ResolvedModel = store.resolve(name_or_path or DEFAULT_MODEL)
    if not resolved.exists:
        if on_notice is not None:
            on_notice(f"pulling {resolved.name} into {store.root} (first use)")
        await asyncio.to_thread(store.pull, resolved.name, progress)
    server = LocalModelServer(
        resolved.path,
        model_alias=resolved.name,
        port=port,
        n_ctx=n_ctx or resolved.n_ctx,
        chat_format=resolved.chat_format,
        on_notice=on_notice,
    )
    await server.astart()
    return LocalModelHandle(
        base_url=server.base_url,
        model_name=server.model_name,
        recommended_api=resolved.api,
        n_ctx=server.n_ctx,
        model_path=resolved.path,
        server=server,
    )
