"""Save a notebook atomically, serialising and validating only the cells that changed.

Each save rewrites the whole file, but the cells that did not change since the last
save are spliced in from their cached JSON, so a save costs about one write of the
file's bytes. The layout is nbformat.write's, so the files diff cleanly against Jupyter's.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbformat.v4.rwbase import split_lines
from nbformat.validator import ValidationError

from kernelagent.errors import KernelAgentError
from kernelagent.notebook.atomic import atomic_write
from kernelagent.notebook.reading import describe_validation_error

log = logging.getLogger(__name__)

# The same JSON layout as nbformat.write.
_JSON_STYLE: dict[str, Any] = {
    "indent": 1,
    "sort_keys": True,
    "separators": (",", ": "),
    "ensure_ascii": False,
}
# How deep a value sits in the file: {"cells": [<cell>]} and
# {"metadata": {"kernelagent": {"conversation": <value>}}}.
_CELL_DEPTH = 2
_CONVERSATION_DEPTH = 3
_TRANSIENT_METADATA = ("orig_nbformat", "orig_nbformat_minor", "signature")


class RecordingError(KernelAgentError):
    """The notebook could not be saved; the file on disk still holds the last good save."""


class NotebookWriter:
    """Writes one notebook file; remembers the JSON of the cells it wrote.

    ``metadata.kernelagent.conversation`` is cached too: it is large and changes once a turn.
    """

    def __init__(self, path: Path, *, validate_on_save: bool = False, durable: bool = True) -> None:
        self.path = path
        self.validate_on_save = validate_on_save
        self.durable = durable
        # id(cell) -> (cell, its JSON as nested in the file); holding the cell keeps its id unique.
        self._cell_json: dict[int, tuple[NotebookNode, bytes]] = {}
        self._conversation_json: bytes | None = None
        self._placeholder = f"@@kernelagent-{secrets.token_hex(8)}@@"
        self._placeholder_pattern = re.compile(f'"{re.escape(self._placeholder)}(\\d+)"')
        self._directory_ready = False

    def changed(self, cell: NotebookNode) -> None:
        """``cell`` changed: serialise it again at the next save."""
        self._cell_json.pop(id(cell), None)

    def changed_all(self) -> None:
        self._cell_json.clear()
        self._conversation_json = None

    def set_conversation(self, data: Any) -> None:
        """Serialise the conversation once, now, instead of at every save."""
        self._conversation_json = nested_json(data, _CONVERSATION_DEPTH)

    def save(self, notebook: NotebookNode) -> None:
        """Write ``notebook`` now, atomically; raise RecordingError if that fails."""
        cells = notebook.cells
        cached = [self._cached_json(cell) for cell in cells]
        self._check_valid(
            notebook, [cell for cell, text in zip(cells, cached, strict=False) if text is None]
        )
        chunks = self._serialise(notebook, cached)
        if not self._directory_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._directory_ready = True
        try:
            atomic_write(self.path, chunks, durable=self.durable)
        except OSError as error:
            raise RecordingError(_save_failure_message(self.path, error)) from error

    def _cached_json(self, cell: NotebookNode) -> bytes | None:
        entry = self._cell_json.get(id(cell))
        return entry[1] if entry is not None and entry[0] is cell else None

    def _serialise(self, notebook: NotebookNode, cached: list[bytes | None]) -> list[bytes]:
        """The file as byte chunks: a small skeleton with placeholders, filled from the caches."""
        pieces: list[bytes] = []
        cell_json: dict[int, tuple[NotebookNode, bytes]] = {}
        for cell, text in zip(notebook.cells, cached, strict=False):
            if text is None:
                text = nested_json(_cell_as_written(cell), _CELL_DEPTH)
            cell_json[id(cell)] = (cell, text)
            pieces.append(text)
        self._cell_json = cell_json  # drops entries of cells no longer in the notebook

        skeleton = {key: value for key, value in notebook.items() if key != "cells"}
        skeleton["cells"] = [f"{self._placeholder}{index}" for index in range(len(pieces))]
        metadata = {k: v for k, v in notebook.metadata.items() if k not in _TRANSIENT_METADATA}
        session = metadata.get("kernelagent")
        if isinstance(session, dict) and "conversation" in session:
            if self._conversation_json is None:
                self._conversation_json = nested_json(session["conversation"], _CONVERSATION_DEPTH)
            metadata["kernelagent"] = {
                **session,
                "conversation": f"{self._placeholder}{len(pieces)}",
            }
            pieces.append(self._conversation_json)
        skeleton["metadata"] = metadata

        chunks: list[bytes] = []
        for index, part in enumerate(self._placeholder_pattern.split(dumps(skeleton))):
            chunks.append(_utf8(part) if index % 2 == 0 else pieces[int(part)])
        chunks.append(b"\n")
        return chunks

    def _check_valid(self, notebook: NotebookNode, changed: list[NotebookNode]) -> None:
        """Validate the notebook's metadata and the changed cells (everything if
        validate_on_save)."""
        try:
            try:
                nbformat.validate(_probe(notebook, changed))
            except ValidationError:
                for cell in changed:
                    _replace_invalid_outputs(cell)
                nbformat.validate(_probe(notebook, changed))
            if self.validate_on_save:
                nbformat.validate(notebook)
        except ValidationError as error:
            raise RecordingError(
                f"Not saving {self.path}: the notebook would be invalid "
                f"({describe_validation_error(error)}). "
                "This is a bug in kernelagent or in what was passed to update_metadata."
            ) from error


def _probe(notebook: NotebookNode, cells: list[NotebookNode]) -> NotebookNode:
    """A notebook with ``notebook``'s metadata and only ``cells``: validating it is O(changed)."""
    metadata = dict(notebook.metadata)
    metadata["kernelagent"] = {**notebook.metadata["kernelagent"], "conversation": None}
    return NotebookNode(
        nbformat=notebook.nbformat,
        nbformat_minor=notebook.nbformat_minor,
        metadata=metadata,
        cells=cells,
    )


def _bytes_as_ascii(value: Any) -> str:
    if isinstance(value, bytes):  # as nbformat's writer does for b64 payloads
        return value.decode("ascii")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_bytes_as_ascii, **_JSON_STYLE)


def _utf8(text: str) -> bytes:
    # A lone surrogate (from a kernel's JSON) becomes a \udXXX escape that reads back unchanged.
    return text.encode("utf-8", errors="backslashreplace")


def nested_json(value: Any, depth: int) -> bytes:
    """``value`` as it reads when nested ``depth`` levels deep in an indent=1 document."""
    # JSON strings never hold a raw newline, so every newline here is layout.
    return _utf8(dumps(value).replace("\n", "\n" + " " * depth))


def _cell_as_written(cell: NotebookNode) -> NotebookNode:
    """A copy of ``cell`` in nbformat's on-disk form (multi-line text split into lists)."""
    written = split_lines(NotebookNode(cells=[nbformat.from_dict(cell)])).cells[0]
    written.metadata.pop("trusted", None)
    return written


def _replace_invalid_outputs(cell: NotebookNode) -> None:
    """Swap outputs nbformat rejects for a note, so one bad output cannot block every save."""
    if cell.get("cell_type") != "code":
        return
    for index, output in enumerate(cell.outputs):
        try:
            nbformat.validate(new_notebook(cells=[new_code_cell(outputs=[output])]))
        except ValidationError as error:
            log.warning(
                "cell %s: invalid output not recorded: %s",
                cell.get("id"),
                describe_validation_error(error),
            )
            cell.outputs[index] = new_output(
                "stream",
                name="stderr",
                text=f"[kernelagent: an output could not be recorded: {error.message}]\n",
            )


def _save_failure_message(path: Path, error: OSError) -> str:
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        cause = f"the disk is full; free some space on the disk holding {path.parent}"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = f"permission denied ({error.strerror}); make {path.parent} writable"
    else:
        cause = f"{error.strerror or error}"
    return (
        f"Could not save the notebook {path}: {cause}. The file on disk still holds the last "
        "successful save; the recording is kept in memory and the next save retries."
    )
