"""Checks that a model file is what it should be: the GGUF header, and a record of a
verified sha256 that stays valid while the file's size and mtime do not change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kernelagent.localmodel.errors import NotGGUFError

GGUF_MAGIC = b"GGUF"


def check_gguf_header(path: Path) -> None:
    """Raise NotGGUFError unless ``path`` starts with ``b"GGUF"``."""
    with path.open("rb") as file:
        magic = file.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise NotGGUFError(
            f"{path} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}); "
            "llama.cpp needs a .gguf model (convert others with llama.cpp's convert scripts)"
        )


@dataclass(frozen=True)
class VerifiedRecord:
    sha256: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, sha256: str) -> VerifiedRecord:
        stat = path.stat()
        return cls(sha256=sha256, size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    def matches(self, path: Path, expected_sha256: str) -> bool:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        return (
            self.sha256 == expected_sha256
            and self.size == stat.st_size
            and self.mtime_ns == stat.st_mtime_ns
        )
