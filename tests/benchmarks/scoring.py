"""Scoring an agent's final answer against a computed expected answer, without an LLM judge.

Kinds:
- ``number``: the answer's number (see ``parse_number``) within ``abs_tol`` or ``rel_tol``.
- ``string``: equal after normalising case, whitespace, quotes and markdown; an answer of
  the form ``label: value`` also matches on its value.
- ``list``: items split on commas, semicolons or lines; compared in order (``ordered``)
  or as sets.

A task with an ``artifact`` also needs that PNG file in the agent's working directory.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FINAL_PREFIX = re.compile(r"^\s*(?:final[ _-]?answer|answer)\s*[:=-]\s*", re.IGNORECASE)
_WRAPPER = re.compile(r"\b(?:np|numpy)\.\w+\(\s*([^()]*?)\s*\)")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d)[,_\u00a0\u202f'](?=\d{3}(?!\d))")
_MARKER = re.compile(r"(?:=|:|\bis\b|\bwas\b|\bare\b|\bequals\b|\bof\b)\s*", re.IGNORECASE)
_EDGE_PUNCTUATION = "\"'`*_.,;:!?()[]{}<> \t\n"


@dataclass(frozen=True)
class Score:
    passed: bool
    parsed: Any
    """What was read from the answer (a float, a string, a list), or None."""
    reason: str = ""
    """Why it failed; empty when it passed."""


def _to_text(answer: Any) -> str:
    if answer is None:
        return ""
    if isinstance(answer, (list, tuple, set)):
        return ", ".join(_to_text(item) for item in answer)
    if hasattr(answer, "item") and callable(answer.item):  # numpy scalars
        with contextlib.suppress(TypeError, ValueError):
            answer = answer.item()
    return str(answer)


def clean_answer(answer: Any) -> str:
    """The answer text without a FINAL ANSWER prefix, markdown emphasis, code ticks or outer
    quotes."""
    text = _to_text(answer).strip()
    text = re.sub(r"\\boxed\{(.*)\}", r"\1", text)
    previous = None
    while previous != text:
        previous = text
        text = text.strip().strip("*_`").strip()
        text = _FINAL_PREFIX.sub("", text)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1]
    return text.strip()


def parse_number(answer: Any) -> float | None:
    """The number in an answer: ``'FINAL ANSWER: $1,234.50'`` -> 1234.5, ``'12.5%'`` -> 12.5.

    Thousands separators (``,``, ``_``, thin spaces, ``'``) between digit groups, currency
    signs, percent signs and units are ignored. With several numbers, the one after the last
    ``=``, ``:``, ``is``, ``was`` ... marker is taken, else the first one.
    """
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        return float(answer) if math.isfinite(answer) else None
    text = clean_answer(answer)
    text = _WRAPPER.sub(r"\1", text).replace("\u2212", "-")
    text = _THOUSANDS.sub("", text)
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    chosen = matches[0]
    if len(matches) > 1:
        markers = list(_MARKER.finditer(text))
        if markers:
            after = [match for match in matches if match.start() >= markers[-1].end()]
            if after:
                chosen = after[0]
    try:
        value = float(chosen.group().rstrip("."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def normalize_string(text: Any) -> str:
    text = clean_answer(text)
    text = re.sub(r"\s+", " ", text).strip(_EDGE_PUNCTUATION).strip()
    return text.casefold()


def parse_list(answer: Any) -> list[str]:
    """Items of a list answer: ``"a, b and c"``, ``"['a', 'b']"``, bullet lines, ``"a; b"``."""
    if isinstance(answer, (list, tuple, set)):
        return [normalize_string(item) for item in answer if normalize_string(item)]
    text = clean_answer(answer).strip()
    if text[:1] in "[(" and text[-1:] in "])":
        text = text[1:-1]
    parts = re.split(r"[,;\n]|\s+and\s+", text)
    items = []
    for part in parts:
        part = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", "", part)
        item = normalize_string(part)
        if item:
            items.append(item)
    return items


def score(
    answer: Any,
    kind: str,
    expected: Any,
    *,
    abs_tol: float = 0.0,
    rel_tol: float = 0.0,
    ordered: bool = True,
) -> Score:
    if answer is None or not _to_text(answer).strip():
        return Score(False, None, "no answer")
    if kind == "number":
        value = parse_number(answer)
        if value is None:
            return Score(False, None, "no number in the answer")
        target = float(expected)
        # 1e-9: a correctly rounded answer is never refused for float noise
        if math.isclose(value, target, rel_tol=rel_tol, abs_tol=abs_tol + 1e-9):
            return Score(True, value)
        return Score(False, value, f"{value:g} != {target:g}")
    if kind == "string":
        targets = [expected] if isinstance(expected, str) else list(expected)
        wanted = {normalize_string(target) for target in targets}
        given = normalize_string(answer)
        candidates = {given}
        if ":" in given:
            candidates.add(given.rsplit(":", 1)[1].strip(_EDGE_PUNCTUATION).strip())
        if candidates & wanted:
            return Score(True, given)
        return Score(False, given, f"{given!r} is not {min(wanted)!r}")
    if kind == "list":
        items = parse_list(answer)
        target_items = [normalize_string(item) for item in expected]
        if ordered:
            ok = items == target_items
        else:
            ok = len(items) == len(set(items)) and set(items) == set(target_items)
        if ok:
            return Score(True, items)
        missing = [item for item in target_items if item not in items]
        extra = [item for item in items if item not in target_items]
        detail = f"missing {missing}" if missing else ""
        detail += (", " if detail and extra else "") + (f"extra {extra}" if extra else "")
        return Score(False, items, detail or "wrong order")
    raise ValueError(f"unknown answer kind {kind!r}")


@dataclass(frozen=True)
class PngCheck:
    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    size: int = 0


def check_png(path: Path, *, min_bytes: int = 2000, min_side: int = 100) -> PngCheck:
    """A saved plot: the file exists, is a PNG (signature + IHDR), is not tiny."""
    path = Path(path)
    if not path.is_file():
        return PngCheck(False, f"{path.name} was not saved")
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return PngCheck(False, f"{path.name} is not a PNG file", size=len(data))
    width, height = struct.unpack(">II", data[16:24])
    if len(data) < min_bytes or min(width, height) < min_side:
        return PngCheck(
            False,
            f"{path.name} is too small ({len(data)} bytes, {width}x{height})",
            width,
            height,
            len(data),
        )
    return PngCheck(True, "", width, height, len(data))


def score_task(task: Any, answer: Any, expected: Any, workdir: Path | None = None) -> Score:
    """Score ``answer`` for a ``suite.Task``; its artifact (a PNG) must be in ``workdir``."""
    result = score(
        answer,
        task.kind,
        expected,
        abs_tol=task.abs_tol,
        rel_tol=task.rel_tol,
        ordered=task.ordered,
    )
    if task.artifact is None:
        return result
    check = check_png(Path(workdir or ".") / task.artifact)
    if not check.ok:
        reasons: Sequence[str] = [r for r in (result.reason, check.reason) if r]
        return Score(False, result.parsed, "; ".join(reasons))
    return result
