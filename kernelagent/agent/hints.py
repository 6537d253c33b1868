"""Short notes added to a failed cell's feedback, from what the loop knows and the model may not.

Each note answers one common way small models get stuck: running the same failing code
again, using a name the kernel never defined (or lost in a restart), importing a package
the offline sandbox does not have, and pandas errors whose usual fix is one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kernelagent.execution import ExecutionResult
from kernelagent.manifest import apply
from kernelagent.sandbox.images import DATA_LIBRARIES

_UNDEFINED_NAME = re.compile(r"name '([^']+)' is not defined")
_MISSING_MODULE = re.compile(r"No module named '([^'.]+)")
MAX_NAMES_LISTED = 25
KNOWN_FIXES: tuple[tuple[str, str], ...] = (
    (
        "Can only use .dt accessor with datetimelike values",
        (
            "[note] The column holds text, not dates: convert it first, e.g. "
            "df['col'] = pd.to_datetime(df['col']), or read the file with parse_dates=['col']."
        ),
    ),
    (
        "Can only use .str accessor with string values",
        (
            "[note] The column does not hold text (dates or numbers?): use .dt on dates, "
            "or .astype(str) before .str."
        ),
    ),
)
"""Errors of the data stack whose usual fix is worth saying, by a part of their message."""
RECENT_ERRORS = 4


@dataclass
class CellMemory:
    """What the loop remembers across cells: the kernel's names and the code that failed."""

    names: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Variables the manifests say the kernel holds, with their fingerprints."""
    failed: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Normalized code of failed cells -> (cell number, its error line)."""
    recent_errors: list[tuple[int, str]] = field(default_factory=list)
    """(cell number, error line) of the last failed cells, oldest first."""

    def apply_manifest(self, manifest: dict[str, dict[str, Any]]) -> None:
        apply(self.names, manifest)

    def forget_names(self) -> None:
        """After a kernel restart the variables are gone."""
        self.names.clear()

    def notes(self, code: str, result: ExecutionResult, cell_number: int) -> list[str]:
        """Notes for the model about this cell's result; remembers it if it failed."""
        if result.status != "error":
            return []
        error = _error_line(result)
        notes = []
        key = _normalized(code)
        earlier = self.failed.get(key)
        if earlier is not None and earlier[1] == error:
            notes.append(
                f"[note] This is the same code as cell {earlier[0]}, and it failed the same way. "
                "Running it again will not help: change the approach."
            )
            distinct = {line: number for number, line in self.recent_errors}
            if len(distinct) > 1:
                listed = "; ".join(f"cell {number}: {line}" for line, number in distinct.items())
                notes.append(
                    f"[note] Your recent cells failed with: {listed}. Each fix brought back another "
                    "error: write one cell that avoids all of them (look at the dtypes and a few values of the data first)."
                )
        else:
            self.failed[key] = (cell_number, error)
        self.recent_errors = [*self.recent_errors, (cell_number, error)][-RECENT_ERRORS:]
        if (match := _UNDEFINED_NAME.search(error)) is not None:
            notes.append(self._undefined_name_note(match.group(1)))
        notes += [fix for message, fix in KNOWN_FIXES if message in error]
        if (match := _MISSING_MODULE.search(error)) is not None:
            notes.append(
                f"[note] '{match.group(1)}' is not installed, and the sandbox has no network, so it "
                f"cannot be installed. Use what is installed: {', '.join(DATA_LIBRARIES)} and the "
                "standard library."
            )
        return notes

    def _undefined_name_note(self, missing: str) -> str:
        if not self.names:
            return (
                f"[note] '{missing}' is not defined: no variables are defined in the kernel yet. "
                "Define it (load the data, import the module) in the cell that uses it or before."
            )
        listed = [f"{name} ({_kind(entry)})" for name, entry in sorted(self.names.items())]
        more = len(listed) - MAX_NAMES_LISTED
        shown = ", ".join(listed[:MAX_NAMES_LISTED]) + (f", and {more} more" if more > 0 else "")
        return f"[note] '{missing}' is not defined. The kernel has: {shown}."


def _error_line(result: ExecutionResult) -> str:
    for output in result.outputs:
        if output.get("output_type") == "error":
            line = f"{output.get('ename')}: {output.get('evalue')}"
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


def _normalized(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def _kind(entry: dict[str, Any]) -> str:
    kind = str(entry.get("type", "?")).rsplit(".", 1)[-1]
    if "shape" in entry:
        return f"{kind} {'x'.join(str(n) for n in entry['shape'])}"
    if "len" in entry:
        return f"{kind} of {entry['len']}"
    return kind
