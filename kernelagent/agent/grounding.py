"""Is a short final answer visible in what the code printed?

Small models often run one harmless cell (``df.columns``) and then answer with a guess.
Before a short answer is accepted, each of its numbers must match a number some
successful cell printed (to the answer's own precision, or as a percentage), and each
of its words-only items (or all of an item's longer words) must appear in the output.
Long prose answers are not checked. The loop asks once; a second answer is accepted as given.

Only the output of a cell that computed something counts: a cell that only prints text
written into its own code (``print("West")``) shows what the model wrote, not what the data
says (``prints_only_literals``).
"""

from __future__ import annotations

import ast
import re

MAX_CHECKED_CHARS = 120
MAX_ITEM_CHARS = 40
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ITEM_SEPARATORS = re.compile(r"\s*(?:[,;\n]|\band\b)\s*")
_EDGE_PUNCTUATION = "\"'`*_.:()[]{} "


def ungrounded_parts(answer: str, evidence: str) -> list[str]:
    """The parts of ``answer`` that ``evidence`` (the cells' output text) does not show."""
    answer = answer.strip()
    if not answer or len(answer) > MAX_CHECKED_CHARS:
        return []
    printed = [read_number(text) for text in _NUMBER.findall(evidence)]
    text = evidence.lower()
    missing: list[str] = []
    for number in _NUMBER.findall(answer):
        if not any(number_matches(number, value) for value in printed):
            missing.append(number)
    for item in _ITEM_SEPARATORS.split(answer):
        word = item.strip(_EDGE_PUNCTUATION)
        if not word or _NUMBER.search(word) or len(word) > MAX_ITEM_CHARS:
            continue
        long_words = re.findall(r"[^\W\d_]{4,}", word.lower())
        if word.lower() not in text and not (long_words and all(w in text for w in long_words)):
            missing.append(word)
    return missing


def read_number(text: str) -> float:
    """A number as printed ("1,007,910.55", "-3e-4") as a float."""
    return float(text.replace(",", ""))


def number_matches(answer_text: str, printed: float) -> bool:
    """Equal at the answer's precision, also read as a fraction shown as a percentage."""
    value = read_number(answer_text)
    mantissa = answer_text.split("e")[0].split("E")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    tolerance = 0.5 * 10**-decimals * 1.001 + 1e-12
    if "e" in answer_text.lower():
        tolerance = max(tolerance, abs(value) * 1e-3)
    return any(
        abs(value - candidate) <= tolerance for candidate in (printed, printed * 100, printed / 100)
    )


def prints_only_literals(code: str) -> bool:
    """Whether every statement of ``code`` only prints or displays literal values
    (``print("Boston, Oakdale")``, ``"West"``, ``print(42)``): nothing is computed."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a magic or a shell cell: not judged
        return False
    return bool(tree.body) and all(_shows_a_literal(statement) for statement in tree.body)


def _shows_a_literal(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.Expr):
        return False
    value = statement.value
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "print"
    ):
        return all(_is_literal(arg) for arg in value.args) and all(
            _is_literal(keyword.value) for keyword in value.keywords
        )
    return _is_literal(value)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True
