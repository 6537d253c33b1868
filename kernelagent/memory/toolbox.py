"""What the model's ``remember`` and ``recall`` tools do, independent of how tools are
offered (the host-tools interface wraps them: see session/host_tool_setup.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernelagent.errors import InvalidRequestError
from kernelagent.memory.prompt import memory_line
from kernelagent.memory.records import MEMORY_KINDS, MemoryKind
from kernelagent.memory.store import MemoryStore

REMEMBER_DESCRIPTION = (
    "Save a fact or finding for later sessions (they see it when they work on the same data "
    "or a related task): a unit, a data-quality quirk, how to read a file, a result worth "
    "reusing with its number. One short, self-contained sentence or two."
)
RECALL_DESCRIPTION = (
    "Search what earlier sessions remembered (dataset cards, findings, facts). Returns the "
    "best matches with their ids and the sessions they came from."
)
REMEMBER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "What to remember."},
        "kind": {"type": "string", "enum": ["fact", "finding", "preference"]},
        "dataset": {
            "type": "string",
            "description": "The workspace file it is about (default: the only input, if one).",
        },
    },
    "required": ["text"],
}
RECALL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "Words to look for."}},
    "required": ["query"],
}
RECALL_LIMIT = 8


@dataclass
class ToolReply:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


class MemoryToolbox:
    """Serves the tools of one session: ``inputs`` are its recorded inputs (name, sha256)."""

    def __init__(self, store: MemoryStore, session_id: str, inputs: list[dict[str, Any]]) -> None:
        self.store = store
        self.session_id = session_id
        self.inputs = [entry for entry in inputs if entry.get("sha256")]

    def remember(self, arguments: dict[str, Any]) -> ToolReply:
        text = arguments.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError("remember needs a text", hint='{"text": "..."}')
        kind = arguments.get("kind") or "fact"
        if kind not in MEMORY_KINDS or kind == "dataset":
            raise InvalidRequestError(
                f"unknown kind {kind!r}", hint="use fact, finding or preference"
            )
        dataset = self._dataset(arguments.get("dataset"))
        memory = self.store.remember(
            text,
            _kind(kind),
            session_id=self.session_id,
            dataset_sha256=dataset.get("sha256"),
            dataset_name=dataset.get("name"),
        )
        about = f" (about {memory.dataset_name})" if memory.dataset_name else ""
        return ToolReply(
            f"Remembered as {memory.id}{about}.", {"memory_id": memory.id, "kind": memory.kind}
        )

    def recall(self, arguments: dict[str, Any]) -> ToolReply:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("recall needs a query", hint='{"query": "revenue unit"}')
        found = self.store.search(
            query, datasets=[entry["sha256"] for entry in self.inputs], limit=RECALL_LIMIT
        )
        if not found:
            return ToolReply("No memories match.", {"memory_ids": []})
        lines = [
            memory_line(memory)
            + (f" (from session {memory.session_id})" if memory.session_id else "")
            for memory in found
        ]
        return ToolReply("\n".join(lines), {"memory_ids": [memory.id for memory in found]})

    def _dataset(self, name: Any) -> dict[str, Any]:
        if isinstance(name, str) and name:
            for entry in self.inputs:
                if entry.get("name") == name.rsplit("/", 1)[-1]:
                    return entry
            return {}
        return self.inputs[0] if len(self.inputs) == 1 else {}


def _kind(kind: str) -> MemoryKind:
    return next(known for known in MEMORY_KINDS if known == kind)
