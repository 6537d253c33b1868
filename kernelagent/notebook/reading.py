"""Read any notebook file as a valid nbformat 4.5 notebook, or say what is wrong with it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.reader import get_version
from nbformat.v4 import upgrade as upgrade_v4
from nbformat.validator import ValidationError, normalize
from nbformat.warnings import MissingIDFieldWarning

from kernelagent.errors import KernelAgentError

DEFAULT_KERNELSPEC: dict[str, str] = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}


class NotebookFormatError(KernelAgentError, ValueError):
    """A file is not a notebook that can be read (or continued)."""


def load_notebook(path: Path | str) -> NotebookNode:
    """Read any notebook as a valid nbformat 4.5 NotebookNode, or raise NotebookFormatError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise NotebookFormatError(f"Cannot read {path}: {error.strerror or error}") from error
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise NotebookFormatError(
            f"{path} is not a notebook: it is not valid JSON ({error})"
        ) from error
    if not isinstance(data, dict) or "nbformat" not in data:
        found = (
            "an object without an 'nbformat' key" if isinstance(data, dict) else _json_kind(data)
        )
        raise NotebookFormatError(
            f"{path} is not a notebook: expected a JSON object with an 'nbformat' key, found "
            f"{found}"
        )
    major, minor = get_version(data)
    if not isinstance(major, int) or major < 1:
        raise NotebookFormatError(f"{path} is not a notebook: its 'nbformat' is {major!r}")
    if major not in nbformat.versions:
        raise NotebookFormatError(
            f"{path} uses nbformat {major}, newer than the nbformat 4 this version reads; "
            "upgrade nbformat and kernelagent"
        )
    try:
        notebook = nbformat.versions[major].to_notebook_json(data, minor=minor)
        notebook = nbformat.convert(notebook, 4)
        if notebook.nbformat_minor < nbformat.v4.nbformat_minor:
            notebook = upgrade_v4(notebook, from_version=4, from_minor=notebook.nbformat_minor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingIDFieldWarning)
            _, notebook = normalize(notebook)  # adds missing cell ids, repairs duplicates
        nbformat.validate(notebook)
    except ValidationError as error:
        raise NotebookFormatError(
            f"{path} is not a valid notebook: {describe_validation_error(error)}"
        ) from error
    except Exception as error:
        # nbformat's converters fail obscurely on broken structure; the schema says what is wrong.
        cause = _schema_problem(data) or f"{type(error).__name__}: {error}"
        raise NotebookFormatError(f"{path} is not a valid notebook: {cause}") from error
    return notebook


def _schema_problem(data: dict[str, Any]) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(data)
    except ValidationError as error:
        return describe_validation_error(error)
    except Exception:
        return None
    return None


def describe_validation_error(error: ValidationError) -> str:
    """The schema's complaint and where, e.g. "'source' is a required property (at cells/0)"."""
    where = "/".join(str(part) for part in getattr(error, "absolute_path", ()))
    return f"{error.message} (at {where})" if where else str(error.message)


def _json_kind(data: Any) -> str:
    names = {list: "a JSON list", str: "a JSON string", bool: "a JSON boolean", type(None): "null"}
    return names.get(type(data), "a JSON number")
