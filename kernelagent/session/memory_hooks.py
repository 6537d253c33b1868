"""A session's memory: recall into the system prompt before its first instruction, and
dataset cards and the answer written when it finishes (no model call for either).

Memory never fails a session: a store that cannot be read or written is logged and
recorded in the notebook metadata (``memory_error``), and the session goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from kernelagent.agent.compaction import ask_without_tools
from kernelagent.agent.model import Conversation, Model, ModelTurn, UserItem
from kernelagent.hashing import sha256_file
from kernelagent.memory.cards import dataset_cards, finding_text
from kernelagent.memory.prompt import recall_section
from kernelagent.memory.records import Memory
from kernelagent.memory.store import MemoryStore, open_memory_store
from kernelagent.notebook.recorder import NotebookRecorder

log = logging.getLogger(__name__)

HASHED_FILE_LIMIT = 64 * 1024 * 1024
"""Workspace files up to this size are hashed to find memories about the same data."""
RECALL_CANDIDATES = 30
LEARN_ENV = "KERNELAGENT_LEARN"
LEARNED_CHARS = 1_200
LEARN_TIMEOUT = 180.0
LEARN_PROMPT = (
    "The task is done. In at most 5 short bullet points, write what you learned in this "
    "session that a later session on the same data would need: units, data-quality quirks, "
    "how to read the files, results worth reusing (with their numbers). Only what the "
    "outputs showed. Reply NOTHING if there is nothing. Do not call tools."
)


def learn_turn_by_default() -> bool:
    """``$KERNELAGENT_LEARN=0`` turns the end-of-session "what I learned" turn off."""
    return os.environ.get(LEARN_ENV, "1").strip().lower() not in ("0", "off", "no", "false")


def memory_store(enabled: bool, project: str | None = None) -> MemoryStore | None:
    """The user's memory store in the session store's database, or None when memory is
    off (or the database cannot be used: the session goes on without memory)."""
    if not enabled:
        return None
    from kernelagent.session.store import default_home

    try:
        return open_memory_store(default_home(), project=project)
    except Exception as error:  # an unusable store must not stop the session
        log.warning("kernelagent: memory is off for this session: %s", error)
        return None


class SessionMemory:
    """Used by :class:`~kernelagent.session.session.Session` at its first instruction and
    at its end."""

    def __init__(self, store: MemoryStore, recorder: NotebookRecorder, session_id: str) -> None:
        self.store = store
        self.recorder = recorder
        self.session_id = session_id

    def recall(self, conversation: Conversation, instruction: str, workspace: Path) -> list[Memory]:
        """Put the memories relevant to the task and its data into the system prompt."""
        inputs = self._inputs()
        datasets = [entry["sha256"] for entry in inputs] + workspace_hashes(workspace, inputs)
        names = " ".join(entry.get("name", "") for entry in inputs)
        try:
            found = self.store.search(
                f"{instruction} {names}", datasets=datasets, limit=RECALL_CANDIDATES
            )
            section, shown = recall_section(found)
            self.store.mark_shown(shown)
        except Exception as error:
            self._failed("recall", error)
            return []
        if section:
            conversation.system += section
        self.recorder.update_metadata(
            memories_shown=[
                {"id": m.id, "kind": m.kind, "dataset_sha256": m.dataset_sha256} for m in shown
            ]
        )
        return shown

    def write_after(self, workspace: Path) -> list[Memory]:
        """Dataset cards for the inputs and the answer as a finding."""
        notebook = self.recorder.notebook
        written: list[Memory] = []
        source: dict[str, Any] = {
            "session_id": self.session_id,
            "notebook": str(self.recorder.path),
        }
        try:
            cards = dataset_cards(notebook, workspace)
            for card in cards:
                written.append(
                    self.store.remember(
                        card.text(),
                        "dataset",
                        key=card.key,
                        cell_id=card.cell_id,
                        dataset_sha256=card.sha256,
                        dataset_name=card.name,
                        **source,
                    )
                )
            finding = finding_text(notebook)
            if finding is not None:
                about = cards[0] if cards else None
                written.append(
                    self.store.remember(
                        finding,
                        "finding",
                        key=f"finding:{self.session_id}",
                        cell_id=last_ok_cell(notebook),
                        dataset_sha256=about.sha256 if about else None,
                        dataset_name=about.name if about else None,
                        **source,
                    )
                )
        except Exception as error:
            self._failed("write", error)
        if written:
            self.recorder.update_metadata(memories_written=[memory.id for memory in written])
        return written

    async def learn(self, model: Model, conversation: Conversation) -> ModelTurn | None:
        """One bounded turn, no tools: the model's own note of what it learned, saved as a
        fact about the session's (first) input. Returns the turn (for its usage)."""
        request = Conversation(
            system=conversation.system,
            items=[*conversation.items, UserItem(text=LEARN_PROMPT)],
        )
        try:
            turn = await asyncio.wait_for(ask_without_tools(model, request), LEARN_TIMEOUT)
        except Exception as error:  # the answer is in; a failed note is not worth more
            self._failed("learn", error)
            return None
        text = turn.text.strip()[:LEARNED_CHARS]
        if turn.tool_calls or not text or text.upper().startswith("NOTHING"):
            return turn
        inputs = self._inputs()
        try:
            memory = self.store.remember(
                text,
                "fact",
                key=f"learned:{self.session_id}",
                session_id=self.session_id,
                notebook=str(self.recorder.path),
                dataset_sha256=inputs[0]["sha256"] if inputs else None,
                dataset_name=inputs[0].get("name") if inputs else None,
            )
        except Exception as error:
            self._failed("learn", error)
            return turn
        self.recorder.update_metadata(learned={"id": memory.id, "text": text})
        return turn

    def _inputs(self) -> list[dict[str, Any]]:
        inputs = self.recorder.notebook.metadata.get("kernelagent", {}).get("inputs") or []
        return [dict(entry) for entry in inputs if entry.get("sha256")]

    def _failed(self, what: str, error: Exception) -> None:
        log.warning("kernelagent: memory %s failed: %s", what, error)
        self.recorder.update_metadata(memory_error=f"{what}: {error.__class__.__name__}: {error}")


def workspace_hashes(workspace: Path, inputs: list[dict[str, Any]], limit: int = 20) -> list[str]:
    """sha256 of the workspace's top-level files that are not recorded inputs."""
    known = {entry.get("name") for entry in inputs}
    hashes = []
    try:
        files = sorted(path for path in workspace.iterdir() if path.is_file())
    except OSError:
        return []
    for path in files[:limit]:
        if path.name in known or path.name.startswith("."):
            continue
        try:
            if path.stat().st_size <= HASHED_FILE_LIMIT:
                hashes.append(sha256_file(path))
        except OSError:
            continue
    return hashes


def last_ok_cell(notebook: Any) -> str | None:
    for cell in reversed(notebook.cells):
        info = cell.get("metadata", {}).get("kernelagent", {})
        if cell.cell_type == "code" and info.get("status") == "ok":
            return str(cell.id)
    return None
