"""What a finished session teaches without asking the model: a card for each workspace
input (name, sha256, shape, columns and dtypes, the read call that worked) and its final
answer as a finding. Read from the recorded notebook: the inputs in its metadata, the
code of its successful cells and the manifests the kernel reported for them."""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READERS = ("read_csv", "read_table", "read_excel", "read_parquet", "read_json", "read_feather")
MAX_COLUMNS = 40
MAX_CODE_CHARS = 600
"""The code behind a finding is clipped to this many characters."""


@dataclass
class DatasetCard:
    name: str
    sha256: str
    size: int | None = None
    shape: list[int] | None = None
    columns: list[tuple[str, str]] = field(default_factory=list)
    """(name, dtype); dtype "" when only the header was read."""
    read_call: str | None = None
    """The call that loaded it in a successful cell, e.g. pd.read_csv('x.csv', sep=';')."""
    cell_id: str | None = None

    @property
    def key(self) -> str:
        return f"dataset:{self.sha256}"

    def text(self) -> str:
        size = f", {self.size:,} bytes" if self.size is not None else ""
        parts = [f"{self.name} (sha256 {self.sha256[:12]}{size})"]
        if self.shape and len(self.shape) == 2:
            parts.append(f"{self.shape[0]:,} rows x {self.shape[1]} columns")
        if self.columns:
            shown = ", ".join(
                f"{name} {dtype}".strip() for name, dtype in self.columns[:MAX_COLUMNS]
            )
            more = f" (+{len(self.columns) - MAX_COLUMNS} more)" if len(self.columns) > 40 else ""
            parts.append(f"columns: {shown}{more}")
        text = ": ".join(parts[:2]) + ("; " + parts[2] if len(parts) > 2 else "")
        if self.read_call:
            text += f". Read with {self.read_call}"
        return text + "."


def dataset_cards(notebook: Any, workspace: Path | None = None) -> list[DatasetCard]:
    """One card per input recorded in ``metadata.kernelagent.inputs``."""
    session = notebook.get("metadata", {}).get("kernelagent", {})
    cards = []
    for entry in session.get("inputs") or []:
        if not entry.get("sha256") or not entry.get("name"):
            continue
        card = DatasetCard(name=entry["name"], sha256=entry["sha256"], size=entry.get("size"))
        _fill_from_cells(card, notebook.get("cells", []))
        if not card.columns and workspace is not None:
            card.columns = [(name, "") for name in header_columns(workspace / card.name)]
        cards.append(card)
    return cards


def _fill_from_cells(card: DatasetCard, cells: list[Any]) -> None:
    """The last successful cell that read the file gives the call and the frame it made."""
    for cell in reversed(cells):
        info = cell.get("metadata", {}).get("kernelagent", {})
        if cell.get("cell_type") != "code" or info.get("status") != "ok":
            continue
        found = read_of(str(cell.get("source", "")), card.name)
        if found is None:
            continue
        call, target = found
        card.read_call, card.cell_id = call, cell.get("id")
        for entry in info.get("manifest") or []:
            if entry.get("name") == target and entry.get("columns"):
                card.shape = entry.get("shape")
                card.columns = [(str(name), str(dtype)) for name, dtype in entry["columns"]]
        return


def read_of(source: str, file_name: str) -> tuple[str, str | None] | None:
    """(the read call, the name it was assigned to) of ``file_name`` in ``source``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    targets: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            for inner in ast.walk(node.value):
                targets[id(inner)] = node.targets[0].id
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        first = node.args[0]
        if (
            name in READERS
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and Path(first.value).name == file_name
        ):
            return ast.unparse(node), targets.get(id(node))
    return None


def header_columns(path: Path) -> list[str]:
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return []
    try:
        with path.open(newline="", errors="replace") as file:
            row = next(csv.reader(file, delimiter="\t" if path.suffix == ".tsv" else ","), [])
    except OSError:
        return []
    return [column.strip() for column in row[:200]]


def finding_text(notebook: Any) -> str | None:
    """The session's task and answer, and the code whose output showed the answer (how the
    data had to be read or cleaned for it), or None when it has no answer."""
    session = notebook.get("metadata", {}).get("kernelagent", {})
    answer = session.get("answer")
    if not answer:
        return None
    task = " ".join(str(session.get("task") or "").split())
    inputs = ", ".join(entry.get("name", "") for entry in session.get("inputs") or [])
    on = f" (data: {inputs})" if inputs else ""
    text = f"Task: {task[:600]}{on}. Answer: {str(answer)[:1500]}"
    code = answer_code(notebook.get("cells", []), str(answer))
    return f"{text}. Computed by: `{code}`" if code else text


def answer_code(cells: list[Any], answer: str, max_chars: int = MAX_CODE_CHARS) -> str | None:
    """The newest successful code cell whose text output shows ``answer``, as one line
    (its statements joined by "; ", comments dropped)."""
    wanted = " ".join(answer.split()).casefold()
    for cell in reversed(cells):
        info = cell.get("metadata", {}).get("kernelagent", {})
        if cell.get("cell_type") != "code" or info.get("status") != "ok":
            continue
        if wanted not in " ".join(_text_output(cell).split()).casefold():
            continue
        lines = [line.strip() for line in str(cell.get("source", "")).splitlines()]
        code = "; ".join(line for line in lines if line and not line.startswith("#"))
        return code if len(code) <= max_chars else code[: max_chars - 3] + "..."
    return None


def _text_output(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(str(output.get("text", "")))
        elif "text/plain" in output.get("data", {}):
            parts.append(str(output["data"]["text/plain"]))
    return "\n".join(parts)
