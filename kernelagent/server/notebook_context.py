"""What the model is told about the notebook it works in: a compact description of the
cells, their outputs and the kernel's variables (as the panel collected them)."""

from __future__ import annotations

from kernelagent.server.notebook_requests import (
    KernelVariable,
    NotebookCellSummary,
    NotebookSessionRequest,
)

SOURCE_LINES = 12
OUTPUT_CHARS = 300
DESCRIPTION_CHARS = 12_000

NOTEBOOK_RULES = """\
You are working IN the notebook {path}, which a person has open in JupyterLab. Its kernel
is already running and holds the person's variables (listed below): use them directly,
do not load the data again unless you must. Each code cell you run is inserted into that
notebook below the person's active cell and runs on its kernel, so keep cells short and
readable; never overwrite or delete the person's variables unless asked."""


def describe_notebook(request: NotebookSessionRequest) -> str:
    """The notebook as the model sees it, at most ``DESCRIPTION_CHARS`` long."""
    parts = [NOTEBOOK_RULES.format(path=request.notebook_path)]
    if request.cells:
        parts.append(f"\nThe notebook's cells ({len(request.cells)}):")
        parts.extend(_cell(number, cell) for number, cell in enumerate(request.cells, 1))
    else:
        parts.append("\nThe notebook has no cells yet.")
    if request.variables:
        parts.append("\nVariables in the kernel:")
        parts.extend(_variable(variable) for variable in request.variables)
    else:
        parts.append("\nThe kernel has no user variables yet.")
    if request.active_cell is not None:
        parts.append(f"\nThe person's active cell is cell {request.active_cell + 1}.")
    text = "\n".join(parts)
    if len(text) > DESCRIPTION_CHARS:
        text = text[: DESCRIPTION_CHARS - 40] + "\n[... notebook description shortened]"
    return text


def _cell(number: int, cell: NotebookCellSummary) -> str:
    lines = cell.source.splitlines()
    source = "\n".join(f"    {line}" for line in lines[:SOURCE_LINES])
    if len(lines) > SOURCE_LINES:
        source += f"\n    ... ({len(lines) - SOURCE_LINES} more lines)"
    count = f" [{cell.execution_count}]" if cell.execution_count is not None else ""
    by = " (written by kernelagent)" if cell.kernelagent else ""
    text = f"- cell {number}, {cell.cell_type}{count}{by}:\n{source or '    (empty)'}"
    if cell.outputs.strip():
        output = cell.outputs.strip()
        if len(output) > OUTPUT_CHARS:
            output = output[:OUTPUT_CHARS] + " ..."
        text += "\n  output: " + output.replace("\n", "\n          ")
    return text


def _variable(variable: KernelVariable) -> str:
    details = [variable.type]
    if variable.shape is not None:
        details.append("shape " + " x ".join(str(size) for size in variable.shape))
    if variable.length is not None and variable.shape is None:
        details.append(f"length {variable.length}")
    if variable.columns:
        columns = variable.columns
        if variable.dtypes and len(variable.dtypes) == len(columns):
            pairs = zip(columns, variable.dtypes, strict=True)
            columns = [f"{name} ({dtype})" for name, dtype in pairs]
        shown = ", ".join(columns[:40]) + (" ..." if len(columns) > 40 else "")
        details.append(f"columns: {shown}")
    line = f"- {variable.name}: {'; '.join(details)}"
    if variable.summary:
        line += f" = {variable.summary[:200]}"
    return line
