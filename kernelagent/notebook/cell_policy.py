"""Per-cell replay policy read from tags, metadata and nbval comment markers.

A cell opts out of output comparison with any of:
- tag ``kernelagent:no-compare`` or ``nondeterministic``;
- nbval's tags ``nbval-ignore-output`` / ``nbval-skip`` or its comment lines
  ``# NBVAL_IGNORE_OUTPUT`` / ``# NBVAL_SKIP`` anywhere in the source (the cell
  still runs here; only its outputs are not compared);
- ``metadata.kernelagent.compare`` set to false.

A cell is a side effect (sends mail, writes outside the workspace, ...) with tag
``kernelagent:side-effect`` or ``metadata.kernelagent.side_effect`` set to true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NO_COMPARE_TAGS = (
    "kernelagent:no-compare",
    "nondeterministic",
    "nbval-ignore-output",
    "nbval-skip",
)
NO_COMPARE_MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "PYTEST_VALIDATE_IGNORE_OUTPUT")
SIDE_EFFECT_TAG = "kernelagent:side-effect"


def comparison_opt_out(cell: Mapping[str, Any]) -> str | None:
    """Why ``cell``'s outputs must not be compared, or None when they should be."""
    tags = _tags(cell)
    for tag in NO_COMPARE_TAGS:
        if tag in tags:
            return f"tagged {tag}"
    if _kernelagent_metadata(cell).get("compare") is False:
        return "metadata.kernelagent.compare is false"
    for line in _source(cell).splitlines():
        comment = line.strip()
        marker = comment.lstrip("#").strip()
        if comment.startswith("#") and marker in NO_COMPARE_MARKERS:
            return f"marked # {marker}"
    return None


def is_side_effect(cell: Mapping[str, Any]) -> bool:
    """Whether ``cell`` acts on the outside world and must not re-run without consent."""
    return SIDE_EFFECT_TAG in _tags(cell) or _kernelagent_metadata(cell).get("side_effect") is True


def _metadata(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = cell.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _tags(cell: Mapping[str, Any]) -> set[str]:
    tags = _metadata(cell).get("tags")
    if not isinstance(tags, (list, tuple)):
        return set()
    return {tag.strip() for tag in tags if isinstance(tag, str)}


def _kernelagent_metadata(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    info = _metadata(cell).get("kernelagent")
    return info if isinstance(info, Mapping) else {}


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source or "")
