"""Record a session, event by event, into an nbformat v4 notebook saved while it runs.

Each save rewrites the whole file atomically, but only cells that changed since the
last save are serialised and validated: the others are spliced in from cached JSON,
so a save costs about one write of the file's bytes.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import secrets
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.reader import get_version
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbformat.v4 import upgrade as upgrade_v4
from nbformat.v4.nbbase import random_cell_id
from nbformat.v4.rwbase import split_lines
from nbformat.validator import ValidationError, normalize
from nbformat.warnings import MissingIDFieldWarning

from kernelagent.errors import KernelAgentError
from kernelagent.events import (
    ActionSkipped,
    AnswerReviewed,
    VoteDecided,
    ApprovalDecided,
    ApprovalRequested,
    AssistantText,
    CellFinished,
    CellOutput,
    CellStarted,
    DisplayUpdated,
    EgressRequest,
    Error,
    Event,
    KernelRestarted,
    SessionFinished,
    SessionStarted,
    StatusChanged,
    UsageUpdated,
    UserMessage,
    code_sha256,
)
from kernelagent.notebook.atomic import atomic_write

log = logging.getLogger(__name__)

DEFAULT_KERNELSPEC: dict[str, str] = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}

# The same JSON layout as nbformat.write, so our files diff cleanly against Jupyter's.
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
_CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
_AWAITING_RUN = ("awaiting_approval", "approved")
_IN_FLIGHT = (*_AWAITING_RUN, "running")
#: Egress requests kept per cell in the notebook (all of them are in the egress log).
MAX_EGRESS_RECORDS = 200


class RecordingError(KernelAgentError):
    """The notebook could not be saved; the file on disk still holds the last good save."""


class NotebookFormatError(KernelAgentError, ValueError):
    """A file is not a notebook that can be read (or continued)."""


def load_notebook(path: Path | str) -> NotebookNode:
    """Read any notebook as a valid nbformat 4.5 NotebookNode, or raise NotebookFormatError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise NotebookFormatError(f"Cannot read {path}: {error.strerror or error}") from error
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise NotebookFormatError(
            f"{path} is not a notebook: it is not valid JSON ({error})"
        ) from error
    if not isinstance(data, dict) or "nbformat" not in data:
        found = (
            "an object without an 'nbformat' key" if isinstance(data, dict) else _json_kind(data)
        )
        raise NotebookFormatError(
            f"{path} is not a notebook: expected a JSON object with an 'nbformat' key, found {found}"
        )
    major, minor = get_version(data)
    if not isinstance(major, int) or major < 1:
        raise NotebookFormatError(f"{path} is not a notebook: its 'nbformat' is {major!r}")
    if major not in nbformat.versions:
        raise NotebookFormatError(
            f"{path} uses nbformat {major}, newer than the nbformat 4 this version reads; "
            "upgrade nbformat and kernelagent"
        )
    try:
        notebook = nbformat.versions[major].to_notebook_json(data, minor=minor)
        notebook = nbformat.convert(notebook, 4)
        if notebook.nbformat_minor < nbformat.v4.nbformat_minor:
            notebook = upgrade_v4(notebook, from_version=4, from_minor=notebook.nbformat_minor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingIDFieldWarning)
            _, notebook = normalize(notebook)  # adds missing cell ids, repairs duplicates
        nbformat.validate(notebook)
    except ValidationError as error:
        raise NotebookFormatError(f"{path} is not a valid notebook: {_describe(error)}") from error
    except Exception as error:
        # nbformat's converters fail obscurely on broken structure; the schema says what is wrong.
        cause = _schema_problem(data) or f"{type(error).__name__}: {error}"
        raise NotebookFormatError(f"{path} is not a valid notebook: {cause}") from error
    return notebook


class NotebookRecorder:
    """Applies session events to a notebook and saves it atomically as each step completes.

    Not thread-safe: feed it from one thread (the session's event loop).
    ``notebook`` is the live document; after editing cells in place, call ``invalidate``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        session_id: str,
        metadata: dict[str, Any] | None = None,
        kernelspec: dict[str, Any] | None = None,
        autosave_interval: float = 1.0,
        validate_on_save: bool = False,
        durable: bool = True,
    ) -> None:
        """Start a new notebook at ``path`` (written on the first save, replacing any file there).

        ``metadata`` seeds ``metadata.kernelagent`` (task, model, sandbox, ...).
        """
        kernelagent = _default_session_metadata(session_id)
        kernelagent.update(metadata or {})
        notebook = new_notebook(
            metadata={
                "kernelspec": dict(kernelspec or DEFAULT_KERNELSPEC),
                "language_info": {"name": "python"},
                "kernelagent": kernelagent,
            }
        )
        self._attach(Path(path), notebook, autosave_interval, validate_on_save, durable)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        session_id: str | None = None,
        autosave_interval: float = 1.0,
        validate_on_save: bool = False,
        durable: bool = True,
    ) -> NotebookRecorder:
        """Continue recording into an existing notebook; its cells are kept as they are."""
        path = Path(path)
        notebook = load_notebook(path)
        metadata = notebook.metadata
        metadata.setdefault("kernelspec", nbformat.from_dict(DEFAULT_KERNELSPEC))
        metadata.setdefault("language_info", nbformat.from_dict({"name": "python"}))
        kernelagent = metadata.setdefault("kernelagent", NotebookNode())
        if not isinstance(kernelagent, dict):
            raise NotebookFormatError(f"{path}: metadata.kernelagent is not an object")
        for key, value in _default_session_metadata(session_id or uuid.uuid4().hex).items():
            kernelagent.setdefault(key, value)
        if session_id:
            kernelagent["session_id"] = session_id
        recorder = cls.__new__(cls)
        recorder._attach(path, notebook, autosave_interval, validate_on_save, durable)
        return recorder

    def _attach(
        self,
        path: Path,
        notebook: NotebookNode,
        autosave_interval: float,
        validate_on_save: bool,
        durable: bool,
    ) -> None:
        self.path = path
        self.autosave_interval = autosave_interval
        self.validate_on_save = validate_on_save
        self.durable = durable
        self._notebook = notebook
        self._cells_by_id: dict[str, NotebookNode] = {
            cell["id"]: cell for cell in notebook.cells if "id" in cell
        }
        self._has_task = any(_role(cell) == "task" for cell in notebook.cells)
        self._model: str | None = self._session.get("model")
        # id(cell) -> (cell, its JSON as nested in the file); holding the cell keeps its id unique.
        self._cell_json: dict[int, tuple[NotebookNode, bytes]] = {}
        self._conversation_json: bytes | None = None
        self._placeholder = f"@@kernelagent-{secrets.token_hex(8)}@@"
        self._placeholder_pattern = re.compile(f'"{re.escape(self._placeholder)}(\\d+)"')
        self._unsaved = True
        self._last_save = float("-inf")
        self._directory_ready = False

    # -- public state ---------------------------------------------------------------------

    @property
    def notebook(self) -> NotebookNode:
        """The live notebook (not a copy)."""
        return self._notebook

    @property
    def model(self) -> str | None:
        """The model recorded on cells the model produces from now on."""
        return self._model

    @model.setter
    def model(self, value: str | None) -> None:
        self._model = value
        if not self._session.get("model"):
            self._session["model"] = value
        self._unsaved = True

    @property
    def unsaved(self) -> bool:
        """Whether the notebook changed since the last save."""
        return self._unsaved

    def update_metadata(self, **fields: Any) -> None:
        """Merge ``fields`` into ``metadata.kernelagent`` (saved with the next save)."""
        if "conversation" in fields:
            self.set_conversation(fields.pop("conversation"))
        _dumps(fields)  # fail here, not at every later save, if a value is not JSON
        self._session.update(fields)
        self._unsaved = True

    def set_conversation(self, data: dict[str, Any] | None) -> None:
        """Store what is needed to continue the conversation (saved with the next save).

        Serialised once here; call again after changing ``data``.
        """
        self._conversation_json = _nested_json(data, _CONVERSATION_DEPTH)
        self._session["conversation"] = data
        self._unsaved = True

    def invalidate(self, cell_id: str | None = None) -> None:
        """Forget cached JSON after editing ``notebook`` in place (one cell, or everything)."""
        if cell_id is None:
            self._cell_json.clear()
            self._conversation_json = None
        elif (cell := self._cells_by_id.get(cell_id)) is not None:
            self._cell_json.pop(id(cell), None)
        self._unsaved = True

    # -- events -----------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Apply one event; save when it completes a step (outputs: at most every autosave_interval).

        Events of parallel attempts (``event.attempt`` set) belong to their branch notebooks."""
        if event.attempt is not None:
            return
        match event:
            case SessionStarted():
                self._on_session_started(event)
            case UserMessage():
                self._on_user_message(event)
            case AssistantText():
                if event.text.strip():
                    self._append(
                        new_markdown_cell(
                            event.text, metadata=self._cell_metadata("assistant", event)
                        )
                    )
            case CellStarted():
                self._on_cell_started(event)
            case CellOutput():
                self._on_cell_output(event)
                return
            case CellFinished():
                self._on_cell_finished(event)
            case DisplayUpdated():
                cell = self._code_cell(event.cell_id, event)
                if cell is None:
                    return
                cell.outputs = [nbformat.from_dict(output) for output in event.outputs]
                self._changed(cell)
            case ApprovalRequested():
                self._on_approval_requested(event)
            case ApprovalDecided():
                self._on_approval_decided(event)
            case KernelRestarted():
                restored = (
                    f" (restored {event.restored_cells} cell(s) by replaying them)"
                    if event.restored_cells
                    else ""
                )
                self._append_note(
                    "kernel_restarted", "Kernel restarted", event.reason + restored, event
                )
            case Error():
                text = event.message + (f"\n\n{event.hint}" if event.hint else "")
                self._append_note("error", "Error", text, event)
            case StatusChanged():
                self._session["status"] = event.status
                self._session["status_reason"] = event.reason
            case UsageUpdated():
                self._session["usage"] = event.total.model_dump()
                self._unsaved = True
                return
            case EgressRequest():
                self._on_egress(event)
                self.save_if_due()  # every request is in the egress log already
                return
            case SessionFinished():
                self._on_session_finished(event)
            case ActionSkipped() | AnswerReviewed():
                entry = event.model_dump(mode="json", exclude={"session_id", "seq", "attempt"})
                key = "skipped_actions" if isinstance(event, ActionSkipped) else "answer_reviews"
                self._session[key] = [*self._session.get(key, []), entry]
                self._unsaved = True
            case VoteDecided():
                links = " · ".join(
                    f"[attempt {number}]({path})" for number, path in enumerate(event.notebooks, 1)
                )
                self._append_note("vote", "Vote", event.summary + (f"\n\n{links}" if links else ""), event)
            case _:  # AssistantTextDelta and anything newer: not recorded
                return
        self.save()

    def save_if_due(self) -> bool:
        """Save unsaved changes if ``autosave_interval`` has passed since the last save."""
        if self._unsaved and time.monotonic() - self._last_save >= self.autosave_interval:
            self.save()
            return True
        return False

    def _on_session_started(self, event: SessionStarted) -> None:
        self._model = event.model
        if not self._session.get("task"):
            self._session["task"] = event.task
        self._session.update(
            model=event.model,
            sandbox=event.sandbox,
            image=event.image,
            workspace=event.workspace,
        )

    def _on_user_message(self, event: UserMessage) -> None:
        role, label = ("instruction", "Instruction") if self._has_task else ("task", "Task")
        self._has_task = True
        if not self._session.get("task"):
            self._session["task"] = event.text
        source = _labelled(label, event.text)
        self._append(new_markdown_cell(source, metadata=self._cell_metadata(role, event)))

    def _on_cell_started(self, event: CellStarted) -> None:
        cell = self._cells_by_id.get(event.cell_id)
        if cell is None or _status(cell) not in _AWAITING_RUN:
            cell = self._append_code_cell(event.cell_id, event.tool_call_id, event.kind, event.code)
        started_at = _iso(event.time)
        cell.source = event.code
        cell.outputs = []
        cell.metadata.kernelagent.update(status="running", started_at=started_at)
        cell.metadata["execution"] = {"iopub.execute_input": started_at}
        self._changed(cell)

    def _on_cell_output(self, event: CellOutput) -> None:
        cell = self._code_cell(event.cell_id, event)
        if cell is None:
            return
        # A copy: the executor keeps mutating its own output dicts (stream merging, display updates).
        cell.outputs.append(nbformat.from_dict(event.output))
        self._changed(cell)
        self.save_if_due()

    def _on_cell_finished(self, event: CellFinished) -> None:
        cell = self._code_cell(event.cell_id, event)
        if cell is None:
            return
        started_at, finished_at = _iso(event.started_at), _iso(event.finished_at)
        cell.outputs = [nbformat.from_dict(output) for output in event.outputs]
        cell.execution_count = event.execution_count
        info = cell.metadata.kernelagent
        info.update(
            status=event.status,
            started_at=started_at,
            finished_at=finished_at,
            duration=round(event.finished_at - event.started_at, 6),
            truncated=event.truncated,
            detail=event.detail,
        )
        if event.manifest is not None:
            info["manifest"] = event.manifest
        cell.metadata["execution"] = {
            "iopub.execute_input": started_at,
            "shell.execute_reply": finished_at,
        }
        self._changed(cell)

    def _on_egress(self, event: EgressRequest) -> None:
        """Append the request to its cell's ``metadata.kernelagent.egress`` (or, made
        between cells, to the notebook's), keeping at most MAX_EGRESS_RECORDS per list."""
        cell = self._cells_by_id.get(event.cell_id) if event.cell_id else None
        if cell is not None and cell.cell_type == "code":
            holder = cell.metadata.kernelagent
            self._changed(cell)
        else:
            holder = self._session
            self._unsaved = True
        records = holder.setdefault("egress", [])
        if len(records) < MAX_EGRESS_RECORDS:
            records.append(nbformat.from_dict(dict(event.request)))
        else:
            holder["egress_not_kept"] = int(holder.get("egress_not_kept", 0)) + 1

    def _on_approval_requested(self, event: ApprovalRequested) -> None:
        cell = self._cells_by_id.get(event.cell_id)
        if cell is None or cell.cell_type != "code" or _status(cell) not in _IN_FLIGHT:
            cell = self._append_code_cell(
                event.cell_id,
                event.tool_call_id,
                event.kind,
                event.code,
                status="awaiting_approval",
            )
        decision = {
            "decision": "requested",
            "at": _iso(event.time),
            "reason": event.reason,
            "code_sha256": event.code_sha256,
        }
        cell.metadata.kernelagent.setdefault("approval", []).append(decision)
        self._changed(cell)

    def _on_approval_decided(self, event: ApprovalDecided) -> None:
        cell = self._code_cell(event.cell_id, event)
        if cell is None:
            return
        info = cell.metadata.kernelagent
        decision: dict[str, Any] = {
            "decision": event.decision,
            "by": event.decided_by,
            "at": _iso(event.time),
            "reason": event.reason,
            "code_sha256": code_sha256(event.code),
        }
        if event.code != cell.source:
            decision["original_code"] = cell.source
            cell.source = event.code
        info.setdefault("approval", []).append(decision)
        if info.get("status") == "awaiting_approval":
            info["status"] = "rejected" if event.decision == "rejected" else "approved"
        self._changed(cell)

    def _on_session_finished(self, event: SessionFinished) -> None:
        self._session.update(status=event.status, status_reason=event.reason, answer=event.answer)
        if event.usage.requests or event.usage.total_tokens or not self._session.get("usage"):
            self._session["usage"] = event.usage.model_dump()
        if event.answer:
            self._append(
                new_markdown_cell(
                    _labelled("Answer", event.answer), metadata=self._cell_metadata("answer", event)
                )
            )

    # -- cells ------------------------------------------------------------------------------

    @property
    def _session(self) -> NotebookNode:
        return self._notebook.metadata["kernelagent"]

    def _cell_metadata(self, role: str, event: Event) -> dict[str, Any]:
        info: dict[str, Any] = {"role": role, "at": _iso(event.time)}
        if role in ("assistant", "answer"):
            info["model"] = self._model
        return {"kernelagent": info}

    def _append(self, cell: NotebookNode) -> None:
        self._notebook.cells.append(cell)
        self._cells_by_id[cell.id] = cell
        self._unsaved = True

    def _append_note(self, role: str, title: str, text: str, event: Event) -> None:
        quoted = "\n".join(f"> {line}".rstrip() for line in f"**{title}:** {text}".splitlines())
        self._append(new_markdown_cell(quoted, metadata=self._cell_metadata(role, event)))

    def _append_code_cell(
        self, cell_id: str, tool_call_id: str, kind: str, code: str, status: str = "running"
    ) -> NotebookNode:
        # Reusing an id already in the notebook (say, from an earlier session) would make it invalid.
        usable = _CELL_ID.match(cell_id) and cell_id not in self._cells_by_id
        # What nbformat's new_code_cell builds, minus its jsonschema check of every new cell
        # (~0.7 ms, a third of a short session's cost per cell); save() validates changed cells.
        cell = nbformat.from_dict(
            {
                "id": cell_id if usable else random_cell_id(),
                "cell_type": "code",
                "metadata": {
                    "kernelagent": {
                        "tool_call_id": tool_call_id,
                        "kind": kind,
                        "status": status,
                        "model": self._model,
                    }
                },
                "execution_count": None,
                "source": code,
                "outputs": [],
            }
        )
        self._append(cell)
        self._cells_by_id[cell_id] = cell  # events keep using their id, whatever the cell's is
        return cell

    def _code_cell(self, cell_id: str, event: Event) -> NotebookNode | None:
        cell = self._cells_by_id.get(cell_id)
        if cell is None or cell.cell_type != "code":
            log.warning("%s for unknown cell %r: not recorded", type(event).__name__, cell_id)
            return None
        return cell

    def _changed(self, cell: NotebookNode) -> None:
        self._cell_json.pop(id(cell), None)
        self._unsaved = True

    # -- saving -----------------------------------------------------------------------------

    def save(self) -> None:
        """Write the notebook now, atomically; raise RecordingError if that fails."""
        self._session["updated_at"] = _iso(time.time())
        cells = self._notebook.cells
        cached = [self._cached_json(cell) for cell in cells]
        self._check_valid([cell for cell, text in zip(cells, cached) if text is None])
        chunks = self._serialise(cached)
        if not self._directory_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._directory_ready = True
        try:
            atomic_write(self.path, chunks, durable=self.durable)
        except OSError as error:
            raise RecordingError(_save_failure_message(self.path, error)) from error
        self._unsaved = False
        self._last_save = time.monotonic()

    def _cached_json(self, cell: NotebookNode) -> bytes | None:
        entry = self._cell_json.get(id(cell))
        return entry[1] if entry is not None and entry[0] is cell else None

    def _serialise(self, cached: list[bytes | None]) -> list[bytes]:
        """The file as byte chunks: a small skeleton with placeholders, filled from the caches."""
        pieces: list[bytes] = []
        cell_json: dict[int, tuple[NotebookNode, bytes]] = {}
        for cell, text in zip(self._notebook.cells, cached):
            if text is None:
                text = _nested_json(_cell_as_written(cell), _CELL_DEPTH)
            cell_json[id(cell)] = (cell, text)
            pieces.append(text)
        self._cell_json = cell_json  # drops entries of cells no longer in the notebook

        skeleton = {key: value for key, value in self._notebook.items() if key != "cells"}
        skeleton["cells"] = [f"{self._placeholder}{index}" for index in range(len(pieces))]
        metadata = {
            k: v for k, v in self._notebook.metadata.items() if k not in _TRANSIENT_METADATA
        }
        session = metadata.get("kernelagent")
        if isinstance(session, dict) and "conversation" in session:
            if self._conversation_json is None:
                self._conversation_json = _nested_json(session["conversation"], _CONVERSATION_DEPTH)
            metadata["kernelagent"] = {
                **session,
                "conversation": f"{self._placeholder}{len(pieces)}",
            }
            pieces.append(self._conversation_json)
        skeleton["metadata"] = metadata

        chunks: list[bytes] = []
        for index, part in enumerate(self._placeholder_pattern.split(_dumps(skeleton))):
            chunks.append(_utf8(part) if index % 2 == 0 else pieces[int(part)])
        chunks.append(b"\n")
        return chunks

    def _check_valid(self, changed: list[NotebookNode]) -> None:
        """Validate the notebook's metadata and the changed cells (everything if validate_on_save)."""
        try:
            try:
                nbformat.validate(self._probe(changed))
            except ValidationError:
                for cell in changed:
                    _replace_invalid_outputs(cell)
                nbformat.validate(self._probe(changed))
            if self.validate_on_save:
                nbformat.validate(self._notebook)
        except ValidationError as error:
            raise RecordingError(
                f"Not saving {self.path}: the notebook would be invalid ({_describe(error)}). "
                "This is a bug in kernelagent or in what was passed to update_metadata."
            ) from error

    def _probe(self, cells: list[NotebookNode]) -> NotebookNode:
        """A notebook with our metadata and only ``cells``: validating it is O(changed)."""
        metadata = dict(self._notebook.metadata)
        metadata["kernelagent"] = {**self._session, "conversation": None}
        return NotebookNode(
            nbformat=self._notebook.nbformat,
            nbformat_minor=self._notebook.nbformat_minor,
            metadata=metadata,
            cells=cells,
        )


# -- helpers ----------------------------------------------------------------------------------


def _default_session_metadata(session_id: str) -> dict[str, Any]:
    now = _iso(time.time())
    return {
        "session_id": session_id,
        "task": None,
        "model": None,
        "sandbox": None,
        "image": None,
        "workspace": None,
        "status": "starting",
        "usage": {},
        "created_at": now,
        "updated_at": now,
        "answer": None,
        "conversation": None,
    }


def _iso(timestamp: float) -> str:
    """UTC ISO 8601 with a Z, as JupyterLab writes execution timings."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _labelled(label: str, text: str) -> str:
    if "\n" in text.strip():
        return f"**{label}:**\n\n{text}"
    return f"**{label}:** {text.strip()}"


def _role(cell: NotebookNode) -> str | None:
    info = cell.get("metadata", {}).get("kernelagent")
    return info.get("role") if isinstance(info, dict) else None


def _status(cell: NotebookNode) -> str | None:
    info = cell.get("metadata", {}).get("kernelagent")
    return info.get("status") if isinstance(info, dict) else None


def _schema_problem(data: dict[str, Any]) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(data)
    except ValidationError as error:
        return _describe(error)
    except Exception:  # noqa: BLE001
        return None
    return None


def _describe(error: ValidationError) -> str:
    """The schema's complaint and where, e.g. "'source' is a required property (at cells/0)"."""
    where = "/".join(str(part) for part in getattr(error, "absolute_path", ()))
    return f"{error.message} (at {where})" if where else str(error.message)


def _json_kind(data: Any) -> str:
    names = {list: "a JSON list", str: "a JSON string", bool: "a JSON boolean", type(None): "null"}
    return names.get(type(data), "a JSON number")


def _bytes_as_ascii(value: Any) -> str:
    if isinstance(value, bytes):  # as nbformat's writer does for b64 payloads
        return value.decode("ascii")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_bytes_as_ascii, **_JSON_STYLE)


def _utf8(text: str) -> bytes:
    # A lone surrogate (from a kernel's JSON) becomes a \udXXX escape that reads back unchanged.
    return text.encode("utf-8", errors="backslashreplace")


def _nested_json(value: Any, depth: int) -> bytes:
    """``value`` as it reads when nested ``depth`` levels deep in an indent=1 document."""
    # JSON strings never hold a raw newline, so every newline here is layout.
    return _utf8(_dumps(value).replace("\n", "\n" + " " * depth))


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
                "cell %s: invalid output not recorded: %s", cell.get("id"), _describe(error)
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
