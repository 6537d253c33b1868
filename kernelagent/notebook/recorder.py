"""Record a session, event by event, into an nbformat v4 notebook saved while it runs.

The recorder maps events to cells and metadata; :mod:`~kernelagent.notebook.writer`
saves the file (only changed cells are serialised again), :mod:`~kernelagent.notebook.reading`
reads an existing one to continue.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell, new_notebook

from kernelagent.events import (
    ActionSkipped,
    AnswerReviewed,
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
    HostToolCalled,
    HostToolFinished,
    KernelRestarted,
    SessionFinished,
    SessionStarted,
    StatusChanged,
    UsageUpdated,
    UserMessage,
    VoteDecided,
)
from kernelagent.notebook.code_cells import MAX_EGRESS_RECORDS, CodeCellEvents
from kernelagent.notebook.document import (
    Document,
    default_session_metadata,
    iso,
    labelled,
    role,
)
from kernelagent.notebook.host_tool_cells import HostToolCells
from kernelagent.notebook.reading import DEFAULT_KERNELSPEC, NotebookFormatError, load_notebook
from kernelagent.notebook.writer import NotebookWriter, RecordingError, dumps

__all__ = [
    "DEFAULT_KERNELSPEC",
    "MAX_EGRESS_RECORDS",
    "NotebookFormatError",
    "NotebookRecorder",
    "RecordingError",
    "load_notebook",
]

log = logging.getLogger(__name__)


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
        kernelagent = default_session_metadata(session_id)
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
        for key, value in default_session_metadata(session_id or uuid.uuid4().hex).items():
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
        self._writer = NotebookWriter(path, validate_on_save=validate_on_save, durable=durable)
        self._doc = Document(notebook, self._writer)
        self._code = CodeCellEvents(self._doc)
        self._tools = HostToolCells(self._doc)
        self._has_task = any(role(cell) == "task" for cell in notebook.cells)
        self._last_save = float("-inf")

    # -- public state ---------------------------------------------------------------------

    @property
    def notebook(self) -> NotebookNode:
        """The live notebook (not a copy)."""
        return self._doc.notebook

    @property
    def model(self) -> str | None:
        """The model recorded on cells the model produces from now on."""
        return self._doc.model

    @model.setter
    def model(self, value: str | None) -> None:
        self._doc.model = value
        if not self._session.get("model"):
            self._session["model"] = value
        self._doc.unsaved = True

    @property
    def unsaved(self) -> bool:
        """Whether the notebook changed since the last save."""
        return self._doc.unsaved

    @property
    def _session(self) -> NotebookNode:
        return self._doc.session

    def update_metadata(self, **fields: Any) -> None:
        """Merge ``fields`` into ``metadata.kernelagent`` (saved with the next save)."""
        if "conversation" in fields:
            self.set_conversation(fields.pop("conversation"))
        dumps(fields)  # fail here, not at every later save, if a value is not JSON
        self._session.update(fields)
        self._doc.unsaved = True

    def set_conversation(self, data: dict[str, Any] | None) -> None:
        """Store what is needed to continue the conversation (saved with the next save).

        Serialised once here; call again after changing ``data``.
        """
        self._writer.set_conversation(data)
        self._session["conversation"] = data
        self._doc.unsaved = True

    def invalidate(self, cell_id: str | None = None) -> None:
        """Forget cached JSON after editing ``notebook`` in place (one cell, or everything)."""
        if cell_id is None:
            self._writer.changed_all()
        elif (cell := self._doc.cells_by_id.get(cell_id)) is not None:
            self._writer.changed(cell)
        self._doc.unsaved = True

    # -- events -----------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Apply one event; save when it completes a step (outputs: at most every
        autosave_interval).

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
                    self._doc.append(
                        new_markdown_cell(
                            event.text, metadata=self._doc.cell_metadata("assistant", event)
                        )
                    )
            case CellStarted():
                self._code.cell_started(event)
            case CellOutput():
                self._code.cell_output(event)
                self.save_if_due()
                return
            case CellFinished():
                self._code.cell_finished(event)
            case DisplayUpdated():
                self._code.display_updated(event)
            case ApprovalRequested(kind="host_tool"):
                self._tools.approval_requested(event)
            case ApprovalRequested():
                self._code.approval_requested(event)
            case ApprovalDecided() if self._tools.owns(event.cell_id):
                self._tools.approval_decided(event)
            case ApprovalDecided():
                self._code.approval_decided(event)
            case HostToolCalled():
                self._tools.called(event)
            case HostToolFinished():
                self._tools.finished(event)
            case KernelRestarted():
                restored = (
                    f" (restored {event.restored_cells} cell(s) by replaying them)"
                    if event.restored_cells
                    else ""
                )
                self._doc.append_note(
                    "kernel_restarted", "Kernel restarted", event.reason + restored, event
                )
            case Error():
                text = event.message + (f"\n\n{event.hint}" if event.hint else "")
                self._doc.append_note("error", "Error", text, event)
            case StatusChanged():
                self._session["status"] = event.status
                self._session["status_reason"] = event.reason
            case UsageUpdated():
                self._session["usage"] = event.total.model_dump()
                self._doc.unsaved = True
                return
            case EgressRequest():
                self._code.egress(event)
                self.save_if_due()  # every request is in the egress log already
                return
            case SessionFinished():
                self._on_session_finished(event)
            case ActionSkipped() | AnswerReviewed():
                entry = event.model_dump(mode="json", exclude={"session_id", "seq", "attempt"})
                key = "skipped_actions" if isinstance(event, ActionSkipped) else "answer_reviews"
                self._session[key] = [*self._session.get(key, []), entry]
                self._doc.unsaved = True
            case VoteDecided():
                links = " · ".join(
                    f"[attempt {number}]({path})" for number, path in enumerate(event.notebooks, 1)
                )
                self._doc.append_note(
                    "vote", "Vote", event.summary + (f"\n\n{links}" if links else ""), event
                )
            case _:  # AssistantTextDelta and anything newer: not recorded
                return
        self.save()

    def save_if_due(self) -> bool:
        """Save unsaved changes if ``autosave_interval`` has passed since the last save."""
        if self._doc.unsaved and time.monotonic() - self._last_save >= self.autosave_interval:
            self.save()
            return True
        return False

    def _on_session_started(self, event: SessionStarted) -> None:
        self._doc.model = event.model
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
        source = labelled(label, event.text)
        self._doc.append(new_markdown_cell(source, metadata=self._doc.cell_metadata(role, event)))

    def _on_session_finished(self, event: SessionFinished) -> None:
        self._session.update(status=event.status, status_reason=event.reason, answer=event.answer)
        if event.usage.requests or event.usage.total_tokens or not self._session.get("usage"):
            self._session["usage"] = event.usage.model_dump()
        if event.answer:
            self._doc.append(
                new_markdown_cell(
                    labelled("Answer", event.answer),
                    metadata=self._doc.cell_metadata("answer", event),
                )
            )

    # -- cells ------------------------------------------------------------------------------

    # -- saving -----------------------------------------------------------------------------

    def save(self) -> None:
        """Write the notebook now, atomically; raise RecordingError if that fails."""
        self._session["updated_at"] = iso(time.time())
        self._writer.save(self._doc.notebook)
        self._doc.unsaved = False
        self._last_save = time.monotonic()
