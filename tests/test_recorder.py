"""NotebookRecorder driven by synthetic events: no kernel needed."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import v3 as nbv3
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from kernelagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    AssistantText,
    AssistantTextDelta,
    CellFinished,
    CellOutput,
    CellStarted,
    Error,
    KernelRestarted,
    SessionFinished,
    SessionStarted,
    StatusChanged,
    Usage,
    UsageUpdated,
    UserMessage,
)
from kernelagent.notebook import (
    NotebookFormatError,
    NotebookRecorder,
    RecordingError,
    load_notebook,
)

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
    "rkJggg=="
)
STREAM = {"output_type": "stream", "name": "stdout", "text": "hello\nwörld\n"}
IMAGE = {
    "output_type": "display_data",
    "data": {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
    "metadata": {},
}
ERROR = {
    "output_type": "error",
    "ename": "ZeroDivisionError",
    "evalue": "division by zero",
    "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"],
}


def read(path: Path) -> nbformat.NotebookNode:
    """Read from disk and validate, as any other tool would."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


def assert_file_matches_memory(recorder: NotebookRecorder) -> None:
    """The spliced file is byte for byte what nbformat.write would produce."""
    expected = nbformat.writes(recorder.notebook) + "\n"
    assert recorder.path.read_text(encoding="utf-8") == expected


def start_cell(
    cell_id: str = "cell-1", code: str = "print('hello')\n1 / 0", **kw: Any
) -> CellStarted:
    return CellStarted(
        cell_id=cell_id, tool_call_id=f"call-{cell_id}", kind="python", code=code, **kw
    )


def finish_cell(
    cell_id: str = "cell-1", outputs: list[dict[str, Any]] | None = None, **kw: Any
) -> CellFinished:
    fields: dict[str, Any] = {
        "status": "ok",
        "outputs": outputs or [],
        "execution_count": 1,
        "started_at": 1_700_000_000.0,
        "finished_at": 1_700_000_002.5,
    }
    fields.update(kw)
    return CellFinished(cell_id=cell_id, **fields)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "session.ipynb"


@pytest.fixture
def recorder(path: Path) -> NotebookRecorder:
    return NotebookRecorder(path, session_id="s-1", validate_on_save=True, autosave_interval=3600)


def test_a_session_is_on_disk_after_every_step(recorder: NotebookRecorder, path: Path) -> None:
    recorder.handle(
        SessionStarted(
            task="Divide",
            model="gpt-test",
            sandbox="local",
            workspace="/w",
            notebook_path=str(path),
        )
    )
    assert read(path).metadata.kernelagent.model == "gpt-test"

    recorder.handle(UserMessage(text="Divide one by zero."))
    assert read(path).cells[-1].source == "**Task:** Divide one by zero."

    recorder.handle(AssistantText(text="I will *try* it."))
    assert read(path).cells[-1].source == "I will *try* it."
    assert read(path).cells[-1].metadata.kernelagent.model == "gpt-test"

    recorder.handle(start_cell())
    running = read(path).cells[-1]
    assert running.id == "cell-1"
    assert running.source == "print('hello')\n1 / 0"
    assert running.metadata.kernelagent.status == "running"
    assert running.metadata.kernelagent.tool_call_id == "call-cell-1"
    assert running.metadata.kernelagent.kind == "python"
    assert "iopub.execute_input" in running.metadata.execution

    for output in (STREAM, IMAGE, ERROR):
        recorder.handle(CellOutput(cell_id="cell-1", output=output))
    assert len(recorder.notebook.cells[-1].outputs) == 3
    assert read(path).cells[-1].outputs == []  # autosave interval not reached

    manifest = [{"name": "x", "type": "int", "fingerprint": "abc"}]
    recorder.handle(
        finish_cell(outputs=[STREAM, IMAGE, ERROR], status="error", detail="", manifest=manifest)
    )
    cell = read(path).cells[-1]
    assert cell.outputs == [STREAM, IMAGE, ERROR]
    assert cell.execution_count == 1
    info = cell.metadata.kernelagent
    assert info.status == "error"
    assert info.started_at == "2023-11-14T22:13:20.000000Z"
    assert info.finished_at == "2023-11-14T22:13:22.500000Z"
    assert info.duration == 2.5
    assert info.truncated is False
    assert info.manifest == manifest
    assert info.model == "gpt-test"
    assert cell.metadata.execution == {
        "iopub.execute_input": "2023-11-14T22:13:20.000000Z",
        "shell.execute_reply": "2023-11-14T22:13:22.500000Z",
    }

    recorder.handle(UserMessage(text="Now explain."))
    assert read(path).cells[-1].source == "**Instruction:** Now explain."

    recorder.handle(
        UsageUpdated(usage=Usage(input_tokens=5), total=Usage(input_tokens=10, requests=2))
    )
    recorder.handle(SessionFinished(status="completed", answer="It raises ZeroDivisionError."))
    notebook = read(path)
    assert notebook.cells[-1].source == "**Answer:** It raises ZeroDivisionError."
    meta = notebook.metadata
    assert meta.kernelspec == {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    assert meta.language_info == {"name": "python"}
    session = meta.kernelagent
    assert session.session_id == "s-1"
    assert session.task == "Divide"
    assert session.sandbox == "local"
    assert session.workspace == "/w"
    assert session.status == "completed"
    assert session.answer == "It raises ZeroDivisionError."
    assert session.usage["input_tokens"] == 10
    assert session.created_at.endswith("Z") and session.updated_at >= session.created_at
    assert_file_matches_memory(recorder)


def test_file_is_identical_to_nbformat_write(recorder: NotebookRecorder) -> None:
    recorder.handle(UserMessage(text="Line one\nline two — ünïcode ✓"))
    recorder.set_conversation(
        {"messages": [{"role": "user", "content": "a\nb"}], "n": [1, {"x": []}]}
    )
    recorder.handle(start_cell(code="%%bash\necho hi\n"))
    recorder.handle(finish_cell(outputs=[STREAM, IMAGE]))
    assert_file_matches_memory(recorder)
    recorder.handle(start_cell("cell-2", code=""))
    recorder.handle(finish_cell("cell-2", outputs=[]))
    recorder.update_metadata(extra={"nested": ["a", "b"]}, empty={})
    recorder.save()
    assert_file_matches_memory(recorder)
    stored = read(recorder.path)
    assert stored.metadata.kernelagent.conversation["messages"][0]["content"] == "a\nb"
    assert stored.cells[1].source == "%%bash\necho hi\n"


def test_outputs_autosave_at_most_once_per_interval(path: Path) -> None:
    recorder = NotebookRecorder(path, session_id="s", autosave_interval=0)
    recorder.handle(start_cell())
    recorder.handle(CellOutput(cell_id="cell-1", output=STREAM))
    assert read(path).cells[-1].outputs == [STREAM]

    recorder.autosave_interval = 3600
    recorder.handle(CellOutput(cell_id="cell-1", output=IMAGE))
    assert len(read(path).cells[-1].outputs) == 1
    assert recorder.unsaved and not recorder.save_if_due()
    recorder.autosave_interval = 0
    assert recorder.save_if_due()
    assert len(read(path).cells[-1].outputs) == 2


def test_outputs_are_copied_not_shared(recorder: NotebookRecorder) -> None:
    recorder.handle(start_cell())
    output = {"output_type": "stream", "name": "stdout", "text": "a"}
    event = CellOutput(cell_id="cell-1", output=output)
    recorder.handle(event)
    event.output["text"] += "b"  # what the executor does when it merges streams
    assert recorder.notebook.cells[-1].outputs[0].text == "a"


def test_approval_edit_then_run(recorder: NotebookRecorder, path: Path) -> None:
    recorder.handle(
        ApprovalRequested(
            cell_id="c1",
            tool_call_id="t1",
            kind="shell",
            code="%%bash\nrm -rf x",
            code_sha256="h",
            reason="deletes files",
        )
    )
    cell = read(path).cells[-1]
    assert cell.metadata.kernelagent.status == "awaiting_approval"
    assert cell.metadata.kernelagent.approval[0]["decision"] == "requested"

    recorder.handle(
        ApprovalDecided(
            cell_id="c1", decision="edited", decided_by="alice", code="%%bash\nrm -rf x/tmp"
        )
    )
    cell = read(path).cells[-1]
    decision = cell.metadata.kernelagent.approval[1]
    assert decision["decision"] == "edited" and decision["by"] == "alice"
    assert decision["original_code"] == "%%bash\nrm -rf x"
    assert cell.source == "%%bash\nrm -rf x/tmp"
    assert cell.metadata.kernelagent.status == "approved"

    recorder.handle(
        CellStarted(cell_id="c1", tool_call_id="t1", kind="shell", code="%%bash\nrm -rf x/tmp")
    )
    recorder.handle(finish_cell("c1"))
    notebook = read(path)
    assert len(notebook.cells) == 1
    assert notebook.cells[0].metadata.kernelagent.status == "ok"
    assert len(notebook.cells[0].metadata.kernelagent.approval) == 2


def test_rejected_cell(recorder: NotebookRecorder, path: Path) -> None:
    recorder.handle(
        ApprovalRequested(
            cell_id="c1", tool_call_id="t1", kind="python", code="x", code_sha256="h", reason="r"
        )
    )
    recorder.handle(
        ApprovalDecided(cell_id="c1", decision="rejected", decided_by="bob", code="x", reason="no")
    )
    cell = read(path).cells[-1]
    assert cell.metadata.kernelagent.status == "rejected"
    assert cell.metadata.kernelagent.approval[1]["reason"] == "no"
    assert "original_code" not in cell.metadata.kernelagent.approval[1]


def test_notes_status_and_ignored_events(recorder: NotebookRecorder, path: Path) -> None:
    recorder.handle(KernelRestarted(reason="the kernel died (out of memory)", restored_cells=3))
    recorder.handle(Error(message="model call failed", hint="check the API key"))
    recorder.handle(StatusChanged(status="paused", reason="waiting"))
    recorder.handle(AssistantTextDelta(delta="partial"))
    recorder.handle(CellOutput(cell_id="nope", output=STREAM))  # unknown cell: ignored
    notebook = read(path)
    assert [cell.metadata.kernelagent.role for cell in notebook.cells] == [
        "kernel_restarted",
        "error",
    ]
    assert notebook.cells[0].source.startswith("> **Kernel restarted:** the kernel died")
    assert "restored 3 cell(s)" in notebook.cells[0].source
    assert notebook.cells[1].source == "> **Error:** model call failed\n>\n> check the API key"
    assert notebook.metadata.kernelagent.status == "paused"


def test_invalid_output_is_replaced_not_blocking(recorder: NotebookRecorder, path: Path) -> None:
    recorder.handle(start_cell())
    recorder.handle(finish_cell(outputs=[STREAM, {"output_type": "stream", "name": "stdout"}]))
    outputs = read(path).cells[-1].outputs
    assert outputs[0] == STREAM
    assert outputs[1].name == "stderr" and "could not be recorded" in outputs[1].text


def test_reopen_and_continue(path: Path) -> None:
    first = NotebookRecorder(path, session_id="s-1", metadata={"task": "T"})
    first.handle(UserMessage(text="T"))
    first.handle(start_cell())
    first.handle(finish_cell(outputs=[STREAM]))
    first.set_conversation({"previous_response_id": "resp_1"})
    first.handle(SessionFinished(status="completed", answer="A"))
    before = read(path)

    second = NotebookRecorder.open(path, validate_on_save=True)
    assert second.notebook.metadata.kernelagent.conversation == {"previous_response_id": "resp_1"}
    second.handle(UserMessage(text="More"))
    second.handle(start_cell("cell-1", code="2"))  # same id as an earlier cell
    second.handle(finish_cell("cell-1", outputs=[IMAGE]))
    after = read(path)
    assert after.cells[: len(before.cells)] == before.cells
    assert after.cells[len(before.cells)].source == "**Instruction:** More"
    new_cell = after.cells[-1]
    assert new_cell.source == "2" and new_cell.outputs == [IMAGE]
    assert new_cell.id != "cell-1"
    assert after.metadata.kernelagent.session_id == "s-1"
    assert after.metadata.kernelagent.task == "T"
    assert_file_matches_memory(second)


def test_open_a_plain_notebook(path: Path) -> None:
    plain = new_notebook(cells=[new_markdown_cell("# Mine"), new_code_cell("1 + 1")])
    plain.nbformat_minor = 4
    for cell in plain.cells:
        del cell["id"]
    path.write_text(json.dumps(plain))
    recorder = NotebookRecorder.open(path, session_id="s-2", validate_on_save=True)
    recorder.handle(UserMessage(text="Go"))
    notebook = read(path)
    assert notebook.nbformat_minor == 5
    assert [cell.source for cell in notebook.cells] == ["# Mine", "1 + 1", "**Task:** Go"]
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.kernelagent.session_id == "s-2"


def test_in_place_edits_need_invalidate(recorder: NotebookRecorder, path: Path) -> None:
    recorder.handle(UserMessage(text="T"))
    recorder.notebook.cells[0].source = "edited"
    recorder.save()
    assert read(path).cells[0].source == "**Task:** T"  # cached
    recorder.invalidate(recorder.notebook.cells[0].id)
    recorder.save()
    assert read(path).cells[0].source == "edited"


def test_metadata_must_be_json(recorder: NotebookRecorder) -> None:
    with pytest.raises(TypeError):
        recorder.update_metadata(bad=object())
    with pytest.raises(TypeError):
        recorder.set_conversation({"bad": {1, 2}})
    recorder.save()


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_failed_save_keeps_the_old_file(
    recorder: NotebookRecorder, path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    recorder.handle(UserMessage(text="T"))
    good = path.read_bytes()

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        def fills_up(fd: int, mode: str) -> Any:
            file = real_fdopen(fd, mode)

            def write(data: bytes) -> None:
                file.write(
                    data[: len(data) // 2]
                )  # part of the file gets out, then the disk is full
                file.flush()
                disk_full()

            file_proxy = type(
                "Full",
                (),
                {
                    "__enter__": lambda self: self,
                    "__exit__": lambda self, *exc: file.close(),
                    "write": staticmethod(write),
                    "flush": file.flush,
                    "fileno": file.fileno,
                },
            )
            return file_proxy()

        monkeypatch.setattr(os, "fdopen", fills_up)
    else:
        monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(RecordingError, match=r"disk is full.*free some space") as caught:
        recorder.handle(AssistantText(text="lost?"))
    assert "next save retries" in str(caught.value)
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # temp file removed

    monkeypatch.undo()
    recorder.save()
    assert read(path).cells[-1].source == "lost?"


def test_permission_error_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = NotebookRecorder(tmp_path / "n.ipynb", session_id="s")

    def denied(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(RecordingError, match="writable"):
        recorder.save()


def test_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "n.ipynb"
    NotebookRecorder(path, session_id="s").save()
    assert read(path).metadata.kernelagent.status == "starting"


# -- load_notebook ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json {", "not valid JSON"),
        ("[1, 2]", "found a JSON list"),
        ('{"cells": []}', "without an 'nbformat' key"),
        ('{"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}', "newer"),
        ('{"nbformat": "four", "nbformat_minor": 0}', "'nbformat' is 'four'"),
        (
            '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, '
            '"cells": [{"cell_type": "code"}]}',
            "not a valid notebook",
        ),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
    ],
)
def test_load_notebook_errors(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(NotebookFormatError, match=message) as caught:
        load_notebook(path)
    assert str(path) in str(caught.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotebookFormatError, match="Cannot read"):
        load_notebook(tmp_path / "missing.ipynb")


def test_load_converts_nbformat_3(tmp_path: Path) -> None:
    old = nbv3.new_notebook(
        worksheets=[
            nbv3.new_worksheet(
                cells=[
                    nbv3.new_code_cell(
                        input="print(1)",
                        prompt_number=1,
                        outputs=[nbv3.new_output("stream", output_text="1\n", stream="stdout")],
                    ),
                    nbv3.new_text_cell("markdown", source="text"),
                ]
            )
        ]
    )
    path = tmp_path / "old.ipynb"
    path.write_text(nbv3.writes_json(old))
    notebook = load_notebook(path)
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5)
    assert [cell.source for cell in notebook.cells] == ["print(1)", "text"]
    assert notebook.cells[0].outputs[0].text == "1\n"
    nbformat.validate(notebook)

    recorder = NotebookRecorder.open(path, session_id="s", validate_on_save=True)
    recorder.handle(UserMessage(text="continue"))
    assert read(path).cells[-1].source == "**Task:** continue"


def test_load_adds_missing_cell_ids(tmp_path: Path) -> None:
    notebook = new_notebook(cells=[new_code_cell("x", outputs=[new_output("stream", text="1")])])
    del notebook.cells[0]["id"]
    path = tmp_path / "noid.ipynb"
    path.write_text(json.dumps(notebook))
    loaded = load_notebook(path)
    assert loaded.cells[0].id
    nbformat.validate(loaded)
