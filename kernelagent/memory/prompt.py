"""Recalled memories as a section of the system prompt, within a budget."""

from __future__ import annotations

from kernelagent.memory.records import Memory

CHARS_PER_TOKEN = 3
RECALL_TOKENS = 1_500
"""At most this many tokens (counted as characters / 3) of memories go into a prompt."""
MEMORY_CHARS = 1_200
"""One memory is clipped to this many characters in the prompt (the store keeps it whole)."""

HEADING = (
    "\nWhat earlier sessions learned (memories; cite one by its id, e.g. [{example}], when "
    "you rely on it; check it against the data if it matters):\n"
)


def memory_line(memory: Memory) -> str:
    about = f", {memory.dataset_name}" if memory.dataset_name else ""
    text = " ".join(memory.text.split())
    if len(text) > MEMORY_CHARS:
        text = text[: MEMORY_CHARS - 3] + "..."
    return f"- [{memory.id}] ({memory.kind}{about}) {text}"


def recall_section(
    memories: list[Memory], budget_tokens: int = RECALL_TOKENS
) -> tuple[str, list[Memory]]:
    """The prompt section and the memories in it, in the order given, until the budget
    is spent; ("", []) when there are none."""
    if not memories:
        return "", []
    heading = HEADING.format(example=memories[0].id)
    budget = budget_tokens * CHARS_PER_TOKEN - len(heading)
    lines: list[str] = []
    shown: list[Memory] = []
    for memory in memories:
        line = memory_line(memory)
        if len(line) + 1 > budget:
            continue
        budget -= len(line) + 1
        lines.append(line)
        shown.append(memory)
    if not shown:
        return "", []
    return heading + "\n".join(lines) + "\n", shown
