"""Does an answer name the kind of thing its question asks for?

Two slips of small models that grounding cannot catch, because the wrong answer *is* in
the output:

- a question that lists its candidates ("which of the columns a, b and c ...") answered
  with none of them, often with the thing they were compared with;
- a "which <thing>" question answered with a bare number that the output shows as the
  value of a labelled row ("April    21356.29"): the row's value where its label was asked.

A third is no answer at all: the model "answers" with the error its code printed ("Error:
'segment' is not a column"); ``reports_failure`` recognises such a text. So is the way
Python shows an object that has no printed value ("<Figure size 1000x600 with 1 Axes>",
"<Axes: title={'center': 'Revenue'}>"), the last line of a plotting cell;
``shows_an_object`` recognises it.

``mismatch`` says what is wrong and what the output offers instead; the review sends such
an answer back once (``answers.AnswerReview``), and the model decides.

A last slip leaves the answer's kind right and its value wrong: a condition of the question
left out of the code ("orders whose amount is greater than 200" summed over all orders).
``numbers_not_in_code`` finds the question's numbers that no code of the task uses; the
verification turn names them.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Iterable
from typing import NamedTuple

from kernelagent.agent.grounding import number_matches, read_number

_ITEM = r"[`'\"]?[\w.-]+[`'\"]?"
_CHOICES = re.compile(
    r"\bwhich\s+(?:one\s+)?of\s+(?:(?:the|these|those|following)\b\s*)?(?:[^\W\d_]+\s+){0,2}?"
    rf"[:,]?\s*(?P<items>{_ITEM}(?:\s*,\s*{_ITEM})*,?\s+(?:and|or)\s+{_ITEM})",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", re.IGNORECASE)
_WHICH_THING = re.compile(r"\bwhich\s+([^\W\d_]+)", re.IGNORECASE)
_NOT_A_THING = frozenset(
    [
        "of",
        "one",
        "is",
        "are",
        "was",
        "were",
        "has",
        "had",
        "have",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "should",
    ]
)
_BARE_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?")
_QUESTION_NUMBER = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?(?![\w%]|\.\d|\s*(?:decimal|digit|significant))", re.IGNORECASE
)
_CODE_NUMBER = re.compile(r"(?<![\w.])\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?")
_FAILURE_START = re.compile(
    r"^\W*(?:(?:error|exception|\w+error)\s*(?::|$)|traceback\b)", re.IGNORECASE
)
_FAILURE_PHRASE = re.compile(
    r"\b(?:is not a column|not found|does not exist|doesn't exist|no such|could not|couldn't|"
    r"cannot|can't|unable to|not available|not present|not possible)\b",
    re.IGNORECASE,
)
_OBJECT_REPR = re.compile(r"<\s*[^\W\d][\w.]*(?:[\s:][^<>\n]*)?>")
_ROW = re.compile(r"^\s*(?P<label>\S.*?)\s{2,}(?P<value>-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


class Mismatch(NamedTuple):
    detail: str
    """For the notebook: what is wrong, in a few words."""
    message: str
    """For the model: what is wrong and what the output offers instead."""


def reports_failure(text: str) -> bool:
    """Whether ``text`` reports an error or that nothing could be computed, instead of
    giving a result: it starts like an error, or says something failed and has no number."""
    text = text.strip()
    if _FAILURE_START.match(text):
        return True
    return bool(_FAILURE_PHRASE.search(text)) and not re.search(r"\d", text)


def shows_an_object(text: str) -> bool:
    """Whether ``text`` is only how Python displays an object with no printed value (a
    figure, a plot's axes, "<... object at 0x7f...>"), not a value."""
    return bool(_OBJECT_REPR.fullmatch(text.strip().strip("`")))


def listed_options(question: str) -> list[str]:
    """The candidates a "which of a, b and c" question names, in its own spelling."""
    found = _CHOICES.search(question)
    if found is None:
        return []
    items = [item.strip("`'\"") for item in _SEPARATOR.split(found["items"].strip())]
    return [item for item in items if item]


def asked_thing(question: str) -> str | None:
    """The noun of a "which <thing>" question ("which month had ..." -> "month")."""
    for found in _WHICH_THING.finditer(question):
        if found[1].casefold() not in _NOT_A_THING:
            return found[1]
    return None


def row_label(number: str, output: str) -> tuple[str, str] | None:
    """The label of the one kind of row in ``output`` whose value is ``number``, and that row:
    the first field with a letter of a line laid out as "<label>   <value>"."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        row = _ROW.match(line)
        if row is None or not number_matches(number, read_number(row["value"])):
            continue
        label = next((field for field in row["label"].split() if re.search(r"[^\W\d_]", field)), "")
        if label and not row["label"].endswith(":"):  # "Total:   7" is a caption
            found.setdefault(label, line.strip())
    if len(found) != 1:
        return None
    return next(iter(found.items()))


def mismatch(question: str, answer: str, output: str) -> Mismatch | None:
    """Why ``answer`` is not the kind of thing ``question`` asks for, with what ``output``
    (the cell the answer came from) offers instead; None when nothing is wrong."""
    answer = answer.strip().strip("`*\"'. ")
    if not answer:
        return None
    options = listed_options(question)
    if options:
        folded = answer.casefold()
        named = [
            option
            for option in options
            if re.search(rf"(?<![\w]){re.escape(option.casefold())}(?![\w])", folded)
        ]
        if named:
            return None
        return Mismatch(
            f"none of the options the question lists ({', '.join(options)})",
            f"The question asks which of {', '.join(options)}; your answer {answer!r} is none "
            f"of them. Compare only those (leave out anything that is not one of them) and "
            f"answer with one of them.",
        )
    thing = asked_thing(question)
    if thing is None or not _BARE_NUMBER.fullmatch(answer):
        return None
    labelled = row_label(answer.rstrip("%"), output)
    if labelled is None:
        return None
    label, line = labelled
    return Mismatch(
        f"a number where the question asks which {thing}; the output labels it {label!r}",
        f"The question asks which {thing}; your answer {answer} is a number, and the output "
        f"shows it as the value of the row labelled {label!r}:\n{line}\nIf the question asks "
        f"for that row's label, answer with the label; if it asks for this number, give the "
        f"same answer again.",
    )


def numbers_not_in_code(question: str, cells: Iterable[str]) -> list[str]:
    """The numbers of ``question`` (thresholds, years, counts; not percentages, precisions
    or parts of names) that the code of no cell uses, as a number or inside a string (a
    date, a query); comments do not count ("# amount greater than 200" filters nothing)."""
    used = set().union(*(_numbers_used(code) for code in cells))
    missing: list[str] = []
    for number in _QUESTION_NUMBER.findall(question):
        if float(number) not in used and number not in missing:
            missing.append(number)
    return missing


def _numbers_used(code: str) -> set[float]:
    try:
        tree = ast.parse(code)
    except SyntaxError:  # IPython magics, say: read it as text without its comments
        return _numbers_in("\n".join(line.split("#", 1)[0] for line in code.splitlines()))
    used: set[float] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
            continue
        if isinstance(node.value, int | float):
            used.add(float(node.value))
        elif isinstance(node.value, str):
            used |= _numbers_in(node.value)
    return used


def _numbers_in(text: str) -> set[float]:
    used = set()
    for literal in _CODE_NUMBER.findall(text):
        with contextlib.suppress(ValueError):
            used.add(float(literal.replace("_", "")))
    return used
