"""What the loop remembers across cells, and the short notes it adds to failed cells.

Small models get stuck in a few common ways: sending the same failing code again, using a
name or a column the kernel does not have, importing a package the offline sandbox lacks,
and pandas errors whose usual fix is one line. :class:`CellMemory` knows the kernel's names
(from the cells' manifests, DataFrame columns included) and the code that failed, so the
loop can refuse a repeat before it runs and say what does exist.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from kernelagent.execution.result import ExecutionResult
from kernelagent.manifest import apply
from kernelagent.sandbox.images import DATA_LIBRARIES

_UNDEFINED_NAME = re.compile(r"name '([^']+)' is not defined")
_MISSING_MODULE = re.compile(r"No module named '([^'.]+)")
_MISSING_KEY = re.compile(r"^KeyError: ['\"](.+?)['\"]$")
_MISSING_ATTRIBUTE = re.compile(r"'DataFrame' object has no attribute '([^']+)'")
MAX_NAMES_LISTED = 25
MAX_COLUMNS_LISTED = 30
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
FAILED_STATUSES = frozenset({"error", "timeout", "kernel_died"})


@dataclass(frozen=True)
class FailedCell:
    number: int
    """The cell's position among the session's cells (1-based), as the model reads it."""
    cell_id: str
    error: str
    """Its error line, e.g. ``KeyError: 'city'``."""
    state: int
    """The kernel-state version it failed at (see :attr:`CellMemory.state`)."""


@dataclass
class CellMemory:
    """What the loop remembers across cells: the kernel's names and the code that failed."""

    names: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Variables the manifests say the kernel holds, with their fingerprints."""
    failed: dict[str, FailedCell] = field(default_factory=dict)
    """Normalized code of failed cells -> the cell that failed."""
    recent_errors: list[tuple[int, str]] = field(default_factory=list)
    """(cell number, error line) of the last failed cells, oldest first."""
    state: int = 0
    """Bumped whenever a successful cell changes what the kernel holds (names or, for a
    shell command, possibly files), or the kernel restarts. Code that failed at the
    current state fails again; after a change it may not, so it is allowed to run."""

    def apply_manifest(self, manifest: dict[str, dict[str, Any]]) -> None:
        apply(self.names, manifest)

    def forget_names(self) -> None:
        """After a kernel restart the variables are gone."""
        self.names.clear()
        self.state += 1

    def repeat_of(self, kind: str, code: str) -> FailedCell | None:
        """The failed cell this code repeats, when the kernel has not changed since."""
        earlier = self.failed.get(code_key(kind, code))
        return earlier if earlier is not None and earlier.state == self.state else None

    def record(
        self,
        kind: str,
        code: str,
        result: ExecutionResult,
        *,
        cell_number: int,
        cell_id: str,
        manifest: dict[str, Any] | None,
    ) -> list[str]:
        """Remember a finished cell; returns notes for the model when it failed."""
        if manifest:
            self.apply_manifest(manifest)
        if result.status not in FAILED_STATUSES:
            if manifest or (kind == "shell" and result.ok):
                self.state += 1
            return []
        error = error_line(result) or result.detail or result.status
        key = code_key(kind, code)
        notes = []
        earlier = self.failed.get(key)
        if earlier is not None and earlier.error == error:
            notes.append(
                f"[note] This is the same code as cell {earlier.number}, and it failed the same "
                "way. "
                "Running it again will not help: change the approach."
            )
        self.failed[key] = FailedCell(cell_number, cell_id, error, self.state)
        self.recent_errors = [*self.recent_errors, (cell_number, error)][-RECENT_ERRORS:]
        return notes + self.error_notes(error)

    def alternation_note(self) -> str | None:
        """When recent cells failed in different ways: all of them, so one fix covers all."""
        distinct = {line: number for number, line in self.recent_errors}
        if len(distinct) < 2:
            return None
        listed = "; ".join(f"cell {number}: {line}" for line, number in distinct.items())
        return (
            f"[note] Your recent cells failed with: {listed}. Each fix brought back another "
            "error: write one cell that avoids all of them (look at the dtypes and a few values "
            "of the data first)."
        )

    def error_notes(self, error: str) -> list[str]:
        """Notes on what an error line means in this kernel."""
        notes = []
        if (match := _UNDEFINED_NAME.search(error)) is not None:
            notes.append(self._undefined_name_note(match.group(1)))
        missing_column = _MISSING_KEY.match(error) or _MISSING_ATTRIBUTE.search(error)
        if missing_column is not None and (note := self.columns_note(missing_column.group(1))):
            notes.append(note)
        notes += [fix for message, fix in KNOWN_FIXES if message in error]
        if (match := _MISSING_MODULE.search(error)) is not None:
            notes.append(
                f"[note] '{match.group(1)}' is not installed, and the sandbox has no network, "
                "so it "
                f"cannot be installed. Use what is installed: {', '.join(DATA_LIBRARIES)} and the "
                "standard library."
            )
        return notes

    def columns_note(self, missing: str) -> str | None:
        """The DataFrames' columns, for a key or attribute that is not one of them."""
        frames = self.dataframe_columns()
        if not frames:
            return None
        described = []
        for name, columns in frames.items():
            listed = ", ".join(
                f"{column} ({dtype})"
                for column, dtype in list(columns.items())[:MAX_COLUMNS_LISTED]
            )
            more = len(columns) - MAX_COLUMNS_LISTED
            described.append(f"{name}: {listed}" + (f", and {more} more" if more > 0 else ""))
        everything = list(
            dict.fromkeys(column for columns in frames.values() for column in columns)
        )
        close = difflib.get_close_matches(missing, everything, n=3, cutoff=0.6)
        holders = [name for name, columns in frames.items() if missing in columns]
        if holders:
            where = f" It is a column of {', '.join(holders)}: use that DataFrame (or merge it in)."
        elif close:
            where = f" Did you mean {', '.join(repr(c) for c in close)}?"
        else:
            where = ""
        return (
            f"[note] {missing!r} is not a column there.{where} Columns in the kernel: "
            + "; ".join(described)
            + "."
        )

    def dataframe_columns(self) -> dict[str, dict[str, str]]:
        """DataFrame name -> its columns (in order) and their dtypes, from the manifests."""
        return {
            name: {str(column): str(dtype) for column, dtype in entry["columns"]}
            for name, entry in sorted(self.names.items())
            if isinstance(entry.get("columns"), list)
        }

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


def error_line(result: ExecutionResult) -> str:
    for output in result.outputs:
        if output.get("output_type") == "error":
            line = f"{output.get('ename')}: {output.get('evalue')}"
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


def code_key(kind: str, code: str) -> str:
    """The same key for code that differs only in whitespace, comments or formatting."""
    if kind == "python":
        try:
            return "python:" + ast.dump(ast.parse(code))
        except (SyntaxError, ValueError):
            pass
    lines = (line.split("#", 1)[0] if kind == "shell" else line for line in code.splitlines())
    words = (" ".join(line.split()) for line in lines)
    return f"{kind}:" + "\n".join(line for line in words if line and not line.startswith("#"))


def _kind(entry: dict[str, Any]) -> str:
    kind = str(entry.get("type", "?")).rsplit(".", 1)[-1]
    if "shape" in entry:
        return f"{kind} {'x'.join(str(n) for n in entry['shape'])}"
    if "len" in entry:
        return f"{kind} of {entry['len']}"
    return kind
