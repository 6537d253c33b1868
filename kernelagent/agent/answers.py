"""Whether a final answer is accepted, or sent back to the model once with a reason.

The loop asks :class:`AnswerReview` about every ``final_answer`` call. In order:

1. no code has run successfully yet while there is data to look at -> "no_evidence";
2. the answer reports an error or that nothing could be computed ("Error: 'x' is not a
   column"; ``check_answers``) -> "reports_failure", or is how Python shows an object
   ("<Figure size 640x480 with 1 Axes>") -> "not_what_was_asked": sent back, and each
   time such a non-answer comes again it counts as a turn with no usable action (a model
   that only gives them ends the loop failed);
3. the answer came in the same reply as code, before that code's output existed, and the
   output does not show it (or the code failed) -> "before_output";
4. a short answer that no successful cell printed (``check_answers``, asked once) -> "not_shown";
   an answer already sent back for being in no output, and still in none, is sent back
   again however often it comes (a small model repeats a guess it made before any output);
5. an answer that is not the kind of thing asked for (``check_answers``, asked once): none
   of the options a "which of a, b and c" question lists, or a number for a "which
   <thing>" question where the output labels that number (``answer_kind``);
6. a verification turn (``verify_answers``, once per instruction): the model sees the
   question, the code that produced the answer and its output (and the question's numbers
   no code used), and confirms or fixes it;
7. otherwise "accepted".

A model that only resends a guess sent back in (4) ends the loop; when its newest cell
printed one value, the loop ends with that value instead (``taken_from_output``:
"from_output"), since the code computed it and the guess is in no output.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from kernelagent.agent import prompts
from kernelagent.agent.answer_kind import (
    mismatch,
    numbers_not_in_code,
    reports_failure,
    shows_an_object,
)
from kernelagent.agent.grounding import prints_only_literals, ungrounded_parts
from kernelagent.events import AnswerVerdict

CELLS_KEPT = 50
VERIFY_OUTPUT_CHARS = 1_500
PRINTED_VALUE_CHARS = 400
"""A printed line longer than this is a table or a log, not one answer."""
VERIFY_CODE_CHARS = 3_000


@dataclass(frozen=True)
class RanCell:
    number: int
    code: str
    output: str
    """The text the cell printed or displayed."""
    ok: bool

    @functools.cached_property
    def evidence(self) -> bool:
        """Its output can support an answer: it succeeded and computed something (not
        ``print("West")``, which shows what the model wrote)."""
        return self.ok and not prints_only_literals(self.code)


@dataclass(frozen=True)
class Review:
    verdict: AnswerVerdict
    message: str = ""
    """For the model, when the answer is not accepted."""
    detail: str = ""
    """For the notebook and the person reading it."""
    repeated: bool = False
    """The same unsupported answer as before: the loop samples hotter next turn, and the
    turn counts as one with no usable action (a model that only repeats it stops early)."""


@dataclass
class AnswerReview:
    require_evidence: bool = True
    check_answers: bool = False
    verify_answers: bool = False
    code_blocks: bool = False
    """The model acts with fenced blocks, so it answers with a ``FINAL ANSWER:`` line."""
    question: str = ""
    cells: list[RanCell] = field(default_factory=list)
    """The cells this loop ran, newest last (at most CELLS_KEPT)."""
    evidence_pending: bool = False
    """The current instruction has had no successful cell yet."""
    checked: bool = False
    kind_checked: bool = False
    non_answer_sent_back: bool = False
    verified: bool = False
    sent_back: set[str] = field(default_factory=set)
    """Answers (normalised) sent back for being in no output, in this instruction."""
    answered_since_cell: bool = False
    """The model gave an answer after the newest cell: it took that cell's output as final."""
    review_turns: int = 0
    """Turns the reviews asked for in this instruction (a check or a verification): they
    do not count against the loop's step limit."""

    def new_instruction(self, instruction: str) -> None:
        self.question = instruction
        self.evidence_pending = True
        self.checked = False
        self.kind_checked = False
        self.non_answer_sent_back = False
        self.verified = False
        self.sent_back = set()
        self.review_turns = 0

    def cell_ran(self, number: int, code: str, output: str, ok: bool) -> None:
        self.cells = [*self.cells, RanCell(number, code, output, ok)][-CELLS_KEPT:]
        self.answered_since_cell = False
        if ok:
            self.evidence_pending = False

    def printed(self) -> str:
        return "\n".join(cell.output for cell in self.cells if cell.evidence)

    def printed_value(self, max_chars: int = PRINTED_VALUE_CHARS) -> str | None:
        """What the newest cell printed when it succeeded and printed one short line (a
        number, a name, a list) and the model then tried to answer: the value a model that
        never stated an answer its outputs show had computed."""
        newest = self.cells[-1] if self.cells else None
        if newest is None or not newest.evidence or not self.answered_since_cell:
            return None
        lines = [line.strip() for line in newest.output.strip().splitlines() if line.strip()]
        if len(lines) != 1 or len(lines[0]) > max_chars or lines[0].startswith("["):
            return None
        if reports_failure(lines[0]) or shows_an_object(lines[0]):
            return None
        return lines[0]

    def taken_from_output(self, guess: str) -> tuple[str, str] | None:
        """The answer for a model stuck on ``guess``, which no output shows, after code that
        printed one value: that value, and a note saying where it came from."""
        value = self.printed_value()
        if value is None:
            return None
        detail = (
            f"taken from what cell {self.cells[-1].number} printed; the model's answer "
            f"{guess.strip()!r} is in no output"
        )
        return value, detail

    def grounded(self, answer: str) -> bool:
        """Some cell ran successfully and every checkable part of the answer is in its outputs."""
        evidence = any(cell.evidence for cell in self.cells)
        return evidence and not ungrounded_parts(answer, self.printed())

    def review(self, answer: str, *, data_present: bool, same_turn: list[RanCell]) -> Review:
        """Decide on ``answer``; ``same_turn`` are the cells run earlier in the same reply."""
        self.answered_since_cell = True
        if self.require_evidence and self.evidence_pending and data_present:
            return Review(
                "no_evidence", prompts.ANSWER_WITHOUT_EVIDENCE, "no code had run successfully"
            )
        failure = self.check_answers and reports_failure(answer)
        if failure or (self.check_answers and shows_an_object(answer)):
            again = self.non_answer_sent_back
            self.non_answer_sent_back = True
            if not again:
                self.review_turns += 1
            if failure:
                message = prompts.ANSWER_REPORTS_FAILURE.format(answer=repr(answer.strip()))
                return Review("reports_failure", message, "reports a failure", repeated=again)
            message = prompts.ANSWER_SHOWS_AN_OBJECT.format(answer=repr(answer.strip()))
            detail = "how Python shows an object, not a value"
            return Review("not_what_was_asked", message, detail, repeated=again)
        if same_turn:
            shown = "\n".join(cell.output for cell in same_turn if cell.evidence)
            failed = [cell.number for cell in same_turn if not cell.ok]
            missing = ungrounded_parts(answer, shown)
            if failed or missing or not shown.strip():
                why = (
                    f"cell {failed[0]} failed"
                    if failed
                    else prompts.WRITTEN_NOT_COMPUTED
                    if _only_written(answer, same_turn)
                    else "its output does not show it"
                )
                if not failed:
                    self.sent_back.add(_key(answer))
                return Review(
                    "before_output", self.before_output_message(answer, why, shown, failed), why
                )
        if _key(answer) in self.sent_back and (missing := ungrounded_parts(answer, self.printed())):
            return Review(
                "not_shown",
                self.sent_back_again_message(answer),
                "sent back before and still in no output",
                repeated=True,
            )
        if (
            self.check_answers
            and not self.checked
            and (missing := ungrounded_parts(answer, self.printed()))
        ):
            self.checked = True
            self.sent_back.add(_key(answer))
            self.review_turns += 1
            listed = ", ".join(repr(part) for part in missing)
            message = prompts.ANSWER_NOT_SHOWN.format(parts=listed) + self._why_written(answer)
            return Review("not_shown", message, f"not in any output: {listed}")
        source = self.source_of(answer)
        if (
            self.check_answers
            and not self.kind_checked
            and source is not None
            and (wrong := mismatch(self.question, answer, source.output)) is not None
        ):
            self.kind_checked = True
            self.review_turns += 1
            return Review("not_what_was_asked", f"[not accepted yet] {wrong.message}", wrong.detail)
        if self.verify_answers and not self.verified and source is not None:
            self.verified = True
            self.review_turns += 1
            return Review(
                "verify",
                self.verification_request(answer, source),
                f"checked against cell {source.number}",
            )
        return Review("accepted")

    def before_output_message(self, answer: str, why: str, shown: str, failed: list[int]) -> str:
        """Quote what the code printed, so that a small model can take its answer from it."""
        if failed:
            printed, act = "", "Fix the code first."
        else:
            output = _clip(shown.strip(), VERIFY_OUTPUT_CHARS) if shown.strip() else "(nothing)"
            printed = f"The code printed:\n{output}\n"
            act = (
                prompts.BEFORE_OUTPUT_ACT_BLOCKS
                if self.code_blocks
                else prompts.BEFORE_OUTPUT_ACT_TOOLS
            )
        return prompts.ANSWER_BEFORE_OUTPUT.format(
            answer=repr(answer.strip()), why=why, printed=printed, act=act
        )

    def sent_back_again_message(self, answer: str) -> str:
        newest = next((cell for cell in reversed(self.cells) if cell.ok), None)
        output = _clip(newest.output.strip(), VERIFY_OUTPUT_CHARS) if newest else ""
        act = prompts.GUESS_AGAIN_ACT_BLOCKS if self.code_blocks else prompts.GUESS_AGAIN_ACT_TOOLS
        message = prompts.ANSWER_SENT_BACK_AGAIN.format(
            answer=repr(answer.strip()),
            printed=f"The newest output:\n{output or '(nothing)'}\n" if newest else "",
            act=act,
        )
        return message + self._why_written(answer)

    def _why_written(self, answer: str) -> str:
        """A note for a message about an answer that only a print-only cell shows."""
        return f" ({prompts.WRITTEN_NOT_COMPUTED}.)" if _only_written(answer, self.cells) else ""

    def source_of(self, answer: str) -> RanCell | None:
        """The newest successful cell whose output shows the answer, else the newest one."""
        successful = [cell for cell in reversed(self.cells) if cell.evidence]
        showing = next(
            (cell for cell in successful if not ungrounded_parts(answer, cell.output)), None
        )
        return showing or (successful[0] if successful else None)

    def numbers_ignored(self) -> list[str]:
        """The question's numbers that no code of this loop used."""
        return numbers_not_in_code(self.question, (ran.code for ran in self.cells))

    def verification_request(self, answer: str, cell: RanCell) -> str:
        code = _clip(cell.code, VERIFY_CODE_CHARS)
        output = _clip(cell.output.strip() or "(no output)", VERIFY_OUTPUT_CHARS)
        how = (
            f"reply with the line `FINAL ANSWER: {answer}` again"
            if self.code_blocks
            else "call final_answer with it again"
        )
        unused = self.numbers_ignored()
        return prompts.VERIFY_ANSWER.format(
            question=self.question.strip(),
            code=code,
            output=output,
            answer=answer,
            unused=prompts.UNUSED_NUMBERS.format(
                numbers=" and ".join(unused),
                them="it" if len(unused) == 1 else "them",
                it_is="it is" if len(unused) == 1 else "they are",
            )
            if unused
            else "",
            how=how,
            fix="a corrected ```python block"
            if self.code_blocks
            else "corrected code (python tool)",
        )


def _only_written(answer: str, cells: list[RanCell]) -> bool:
    """Some cell shows ``answer``, and it only printed literals (no evidence)."""
    return any(
        cell.ok and not cell.evidence and not ungrounded_parts(answer, cell.output)
        for cell in cells
    )


def _key(answer: str) -> str:
    return " ".join(answer.casefold().split()).strip(" .`*\"'")


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"
