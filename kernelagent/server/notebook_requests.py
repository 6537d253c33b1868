"""The bodies of the requests of a session that works in a notebook open in JupyterLab.

``POST notebook-sessions`` starts one: the panel sends the question and a compact view of
the notebook (its cells, a summary of their outputs, and the kernel's variables as an
inspection snippet run in that kernel reported them). ``POST sessions/{id}/cells/{cell_id}``
is the panel's answer to a ``cell_started`` event: the outputs of the cell it inserted
into the notebook and ran on the notebook's kernel.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from kernelagent.server.requests import CreateSessionRequest, _RefusedValue

MAX_CELLS = 200
MAX_VARIABLES = 200


class NotebookCellSummary(BaseModel):
    """One cell of the person's notebook, as the panel summarises it."""

    cell_type: Literal["code", "markdown", "raw"] = "code"
    source: str = ""
    outputs: str = ""
    """A plain-text summary of the cell's outputs (the panel shortens long ones)."""
    execution_count: int | None = None
    kernelagent: bool = False
    """The cell was written by kernelagent (it has ``metadata.kernelagent``)."""


class KernelVariable(BaseModel):
    """A variable of the notebook's kernel, as the inspection snippet reported it."""

    name: str
    type: str
    shape: list[int] | None = None
    columns: list[str] | None = None
    dtypes: list[str] | None = None
    length: int | None = None
    summary: str = ""


class NotebookSessionRequest(CreateSessionRequest):
    """``POST notebook-sessions``: ask the agent to work in a notebook open in JupyterLab."""

    notebook_path: str
    """The notebook, relative to the server's root directory."""
    cells: list[NotebookCellSummary] = Field(default_factory=list)
    variables: list[KernelVariable] = Field(default_factory=list)
    active_cell: int | None = None
    """Index of the active cell: the agent's cells go below it."""
    kernel_name: str = ""

    @field_validator("notebook_path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.endswith(".ipynb"):
            raise _RefusedValue(
                "notebook_path must be the path of an .ipynb file",
                hint="relative to the server's root directory, as JupyterLab shows it",
            )
        return value

    @field_validator("cells", mode="before")
    @classmethod
    def _cells(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_CELLS:
            return value[-MAX_CELLS:]
        return value

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_VARIABLES:
            return value[:MAX_VARIABLES]
        return value


class CellResultRequest(BaseModel):
    """``POST sessions/{id}/cells/{cell_id}``: what the cell the panel ran produced."""

    outputs: list[dict[str, Any]] = Field(default_factory=list)
    """nbformat v4 outputs, as the notebook's output area holds them."""
    execution_count: int | None = None
    status: Literal["ok", "error", "kernel_died"] = "ok"
    detail: str = ""
    code: str | None = None
    """The code that ran, when the person changed it before it ran."""

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list) or not all(
            isinstance(item, dict) and isinstance(item.get("output_type"), str) for item in value
        ):
            raise _RefusedValue("outputs must be a list of nbformat outputs (with output_type)")
        return value


NOTEBOOK_REQUEST_MODELS: tuple[type[BaseModel], ...] = (NotebookSessionRequest, CellResultRequest)
