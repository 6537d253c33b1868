"""Combine the answers of independent attempts at one task into one answer.

Only answers *grounded* in their own attempt's outputs vote (see ``answers.AnswerReview``).
Two answers agree when they say the same thing: numbers within a tolerance, words
case-folded, lists as sets. A sentence is compared by what it adds to the question: "The
region with the highest revenue is likely West." and "West" agree for "Which region has
the highest revenue?" (words and numbers of the question, articles and hedges do not count,
unless nothing else is left). The answer is the one most grounded attempts agree on; a tie
goes to the attempt whose code uses every number of the question (one that left "greater
than 200" out of its filter answered another question), then to the one that had fewer
failed cells, then to the earlier one (attempt 1 samples at the session's own temperature).
With no strict majority the answer is still given, and the summary says that it is contested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kernelagent.agent.grounding import read_number

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[^\W_]+")
_ITEMS = re.compile(r"\s*(?:[,;\n]|\band\b)\s*")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PREFIX = re.compile(r"^\s*(?:final\s+)?answer\s*[:=-]\s*", re.IGNORECASE)
_TOKEN = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|[^\W_]+")
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "of",
        "in",
        "on",
        "at",
        "for",
        "to",
        "with",
        "by",
        "from",
        "as",
        "which",
        "what",
        "who",
        "whose",
        "whom",
        "where",
        "when",
        "how",
        "answer",
        "final",
        "result",
        "value",
        "values",
        "likely",
        "probably",
        "approximately",
        "approx",
        "about",
        "around",
        "roughly",
        "nearly",
        "estimated",
        "so",
        "therefore",
        "thus",
    ]
)
"""Words that do not change what an answer says."""
RELATIVE_TOLERANCE = 0.005
"""Numbers also agree when they differ by at most this fraction (e.g. 0.842 vs 0.84)."""
SHOWN_CHARS = 60


@dataclass(frozen=True)
class Ballot:
    number: int
    """The attempt (1-based)."""
    status: str
    answer: str | None = None
    grounded: bool = False
    detail: str = ""
    """Why there is no answer: the status reason or the attempt's last error."""
    failed_cells: int = 0
    """Cells of the attempt that raised: breaks a tie between equally large groups."""
    ignored_numbers: tuple[str, ...] = ()
    """Numbers of the question that no code of the attempt used (``answer_kind.
    numbers_not_in_code``): an attempt with none wins a tie against one with some."""
    printed: str | None = None
    """For an attempt with no answer, or one its outputs do not show: the one short value
    its newest successful cell printed. It supports an answer it agrees with; it never
    leads one."""


@dataclass
class Tally:
    chosen: int | None
    answer: str | None
    agreeing: list[int] = field(default_factory=list)
    attempts: int = 0
    majority: bool = False
    summary: str = ""


def answers_agree(first: str, second: str, question: str = "") -> bool:
    """Whether two answers to ``question`` say the same thing (see the module docstring)."""
    if _answers_agree(first, second):
        return True
    asked = _tokens(question)
    core_first, core_second = _core(first, asked), _core(second, asked)
    if (core_first, core_second) == (first, second):
        return False
    return _answers_agree(core_first, core_second)


def _answers_agree(first: str, second: str) -> bool:
    a_items, b_items = _items(first), _items(second)
    if len(a_items) > 1 or len(b_items) > 1:
        return (
            len(a_items) == len(b_items)
            and all(any(_scalars_agree(a, b) for b in b_items) for a in a_items)
            and all(any(_scalars_agree(b, a) for a in a_items) for b in b_items)
        )
    return _scalars_agree(_clean(first), _clean(second))


def majority_reached(ballots: list[Ballot], attempts: int, question: str = "") -> bool:
    """A strict majority of ``attempts`` already agrees: the rest cannot change the answer."""
    return _best_group(ballots, question)[1] * 2 > attempts


def tally(ballots: list[Ballot], attempts: int, question: str = "") -> Tally:
    """The answer the attempts agree on, with a sentence that says how they voted."""
    group, size = _best_group(ballots, question)
    if not group and (printed := _printed_majority(ballots, attempts, question)):
        first = printed[0]
        numbers = [ballot.number for ballot in printed]
        summary = (
            f"No attempt stated an answer its outputs show; {len(printed)} of {attempts} "
            f"attempts' code printed {_shown(first.printed)} before they answered otherwise, "
            "and the session takes it. " + _others(ballots, numbers)
        )
        return Tally(first.number, first.printed, numbers, attempts, True, summary.strip())
    if not group:
        answered = [ballot for ballot in ballots if ballot.answer is not None]
        if answered:
            first = min(answered, key=lambda ballot: ballot.number)
            summary = (
                f"No attempt's answer appears in its own outputs; the session keeps attempt "
                f"{first.number}'s. " + _others(ballots, [])
            )
            return Tally(
                first.number, first.answer, [first.number], attempts, False, summary.strip()
            )
        listed = "; ".join(
            f"attempt {b.number}: {b.status}" + (f" ({b.detail})" if b.detail else "")
            for b in ballots
        )
        return Tally(None, None, [], attempts, False, f"No attempt answered: {listed}.")
    chosen = group[0]
    agreeing = [ballot.number for ballot in group]
    majority = size * 2 > attempts
    shown = _shown(chosen.answer)
    if majority:
        head = f"{size} of {attempts} attempts agree on {shown}."
    else:
        head = f"No majority: {size} of {attempts} attempts agree on {shown}; " + _why_kept(
            _tied(ballots, group, question), chosen
        )
    supported = [b.number for b in group if not (b.answer is not None and b.grounded)]
    if supported:
        listed = ", ".join(str(number) for number in supported)
        attempt_word = "attempt" if len(supported) == 1 else "attempts"
        head = head.removesuffix(".") + (
            f" ({attempt_word} {listed} by what its code printed, not by a stated answer)."
        )
    summary = f"{head} {_others(ballots, agreeing)}".strip()
    not_run = attempts - len(ballots)
    if not_run > 0:
        were = "s were" if not_run > 1 else " was"
        summary += f" {not_run} attempt{were} not needed: a majority had agreed."
    return Tally(chosen.number, chosen.answer, agreeing, attempts, majority, summary)


def _printed_majority(ballots: list[Ballot], attempts: int, question: str) -> list[Ballot]:
    """Ballots whose printed values agree, when they are a strict majority of ``attempts``
    (else [])."""
    printed = sorted((b for b in ballots if b.printed), key=lambda b: b.number)
    for candidate in printed:
        assert candidate.printed is not None
        agreeing = [
            b
            for b in printed
            if b.printed and answers_agree(candidate.printed, b.printed, question)
        ]
        if len(agreeing) * 2 > attempts:
            return agreeing
    return []


def _groups(ballots: list[Ballot], question: str) -> list[list[Ballot]]:
    """For each grounded ballot (earliest first), it and the ballots that agree with it."""
    voters = sorted(
        (b for b in ballots if b.answer is not None and b.grounded), key=lambda b: b.number
    )
    supporters = [b for b in ballots if not (b.answer is not None and b.grounded) and b.printed]
    groups = []
    for candidate in voters:
        assert candidate.answer is not None
        agreeing = [
            b
            for b in voters
            if b is not candidate
            and b.answer is not None
            and answers_agree(candidate.answer, b.answer, question)
        ]
        agreeing += [
            b
            for b in supporters
            if b.printed is not None and answers_agree(candidate.answer, b.printed, question)
        ]
        groups.append([candidate, *sorted(agreeing, key=lambda b: b.number)])
    return groups


def _best_group(ballots: list[Ballot], question: str = "") -> tuple[list[Ballot], int]:
    """The largest set of grounded ballots that agree; among equally large sets the one
    whose first ballot's code used every number of the question, then the one whose first
    ballot had the fewest failed cells, then the earliest."""
    groups = _groups(ballots, question)
    if not groups:
        return [], 0
    best = min(
        groups,
        key=lambda g: (-len(g), bool(g[0].ignored_numbers), g[0].failed_cells, g[0].number),
    )
    return best, len(best)


def _why_kept(earlier: Ballot | None, chosen: Ballot) -> str:
    """Why a contested answer is the one kept, given the earlier ballot it won a tie against."""
    if earlier is None:
        return "the session keeps it as the earliest."
    if earlier.ignored_numbers and not chosen.ignored_numbers:
        numbers = " and ".join(earlier.ignored_numbers)
        return (
            f"the session keeps it: its code uses every number of the question, and attempt "
            f"{earlier.number}'s does not use {numbers}."
        )
    return "the session keeps it: the attempt with the fewest failed cells."


def _tied(ballots: list[Ballot], chosen: list[Ballot], question: str) -> Ballot | None:
    """An earlier ballot heading a group as large as the chosen one (the tie was broken
    by the numbers their code used or by failed cells), else None."""
    return next(
        (
            group[0]
            for group in _groups(ballots, question)
            if len(group) == len(chosen) and group[0].number < chosen[0].number
        ),
        None,
    )


def _others(ballots: list[Ballot], agreeing: list[int]) -> str:
    parts = []
    for ballot in sorted(ballots, key=lambda b: b.number):
        if ballot.number in agreeing:
            continue
        if ballot.answer is None:
            why = f" ({ballot.detail})" if ballot.detail else ""
            parts.append(f"attempt {ballot.number} {ballot.status}{why}")
        elif not ballot.grounded:
            parts.append(
                f"attempt {ballot.number} answered {_shown(ballot.answer)} "
                "(not in its outputs, not counted)"
            )
        else:
            parts.append(f"attempt {ballot.number} answered {_shown(ballot.answer)}")
    return ("; ".join(parts) + ".") if parts else ""


def _shown(answer: str | None) -> str:
    text = " ".join((answer or "").split())
    return repr(text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…")


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(_THOUSANDS.sub("", text).casefold()))


def _core(answer: str, asked: set[str]) -> str:
    """What ``answer`` adds to the question: its tokens without filler words and without
    the question's own words and numbers (each step only if something is left). List
    items are reduced one by one."""
    items = [_clean(part) for part in _ITEMS.split(_THOUSANDS.sub("", _clean(answer)))]
    reduced = [_reduce(item, asked) for item in items if item]
    return ", ".join(reduced) if len(reduced) > 1 else (reduced[0] if reduced else answer)


def _reduce(item: str, asked: set[str]) -> str:
    tokens = _TOKEN.findall(item)
    for drop in (_FILLER, asked):
        kept = [token for token in tokens if token.casefold() not in drop]
        if kept:
            tokens = kept
    return " ".join(tokens) if tokens else item


def _clean(answer: str) -> str:
    text = _PREFIX.sub("", answer.strip())
    return text.strip().strip("`*_\"'").strip().rstrip(".").strip()


def _items(answer: str) -> list[str]:
    text = _THOUSANDS.sub("", _clean(answer).strip("[](){}"))
    parts = [_clean(part) for part in _ITEMS.split(text)]
    return [part for part in parts if part]


def _scalars_agree(first: str, second: str) -> bool:
    a_numbers, b_numbers = _NUMBER.findall(first), _NUMBER.findall(second)
    if a_numbers or b_numbers:
        return len(a_numbers) == len(b_numbers) and all(
            _numbers_agree(a, b) for a, b in zip(a_numbers, b_numbers, strict=True)
        )
    return _WORD.findall(first.casefold()) == _WORD.findall(second.casefold())


def _numbers_agree(first: str, second: str) -> bool:
    a, b = read_number(first), read_number(second)
    if a == b:
        return True
    decimals = min(_decimals(first), _decimals(second))
    at_precision = abs(a - b) <= 0.5 * 10**-decimals * 1.001
    relative = abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))
    return at_precision and relative


def _decimals(number: str) -> int:
    mantissa = number.lower().split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0
