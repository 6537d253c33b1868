"""How the answers of parallel attempts are compared and counted (pure logic)."""

from __future__ import annotations

import pytest

from kernelagent.agent.voting import Ballot, answers_agree, majority_reached, tally


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("1007910.55", "1007910.5", True),  # the coarser precision decides
        ("$1,007,910.55", "1007910.55", True),
        ("0.842", "0.84", True),
        ("29.4%", "29.4", True),
        ("12", "12.4", False),  # rounds the same, but 3% apart
        ("12", "13", False),
        ("West", "west", True),
        ("Answer: West", "**West**.", True),
        ("West", "East", False),
        ("West", "West region", False),
        ("Widget, Gadget, Doohickey", "doohickey, widget and gadget", True),  # lists as sets
        ("Widget, Gadget", "Widget, Gadget, Doohickey", False),
        ("[S1, S2]", "S2; S1", True),
        ("Hana Ito", "hana ito", True),
    ],
)
def test_answers_agree(first: str, second: str, agree: bool) -> None:
    assert answers_agree(first, second) is agree
    assert answers_agree(second, first) is agree


def ballot(
    number: int, answer: str | None, grounded: bool = True, status: str = "completed"
) -> Ballot:
    return Ballot(
        number,
        status if answer is not None else "failed",
        answer,
        grounded,
        "" if answer is not None else "KeyError: 'city'",
    )


def test_the_majority_wins_and_the_dissent_is_named() -> None:
    result = tally([ballot(1, "40"), ballot(2, "42"), ballot(3, "42.0")], 3)
    assert (result.chosen, result.answer, result.agreeing, result.majority) == (
        2,
        "42",
        [2, 3],
        True,
    )
    assert result.summary == "2 of 3 attempts agree on '42'. attempt 1 answered '40'."


def test_ungrounded_answers_do_not_vote() -> None:
    result = tally(
        [ballot(1, "7", grounded=False), ballot(2, "7", grounded=False), ballot(3, "9")], 3
    )
    assert (result.chosen, result.answer, result.majority) == (3, "9", False)
    assert "No majority: 1 of 3 attempts agree on '9'" in result.summary
    assert "attempt 1 answered '7' (not in its outputs, not counted)" in result.summary


def test_no_majority_keeps_the_earliest_and_says_so() -> None:
    result = tally([ballot(1, "1"), ballot(2, "2"), ballot(3, "3")], 3)
    assert (result.chosen, result.answer, result.majority) == (1, "1", False)
    assert result.summary.startswith(
        "No majority: 1 of 3 attempts agree on '1'; the session keeps it"
    )
    assert "attempt 2 answered '2'; attempt 3 answered '3'" in result.summary


def test_no_answer_at_all_lists_each_attempts_failure() -> None:
    result = tally([ballot(1, None), ballot(2, None)], 2)
    assert result.chosen is None and result.answer is None
    assert (
        result.summary
        == "No attempt answered: attempt 1: failed (KeyError: 'city'); attempt 2: failed (KeyError: 'city')."
    )


def test_a_majority_is_reached_once_more_than_half_agree() -> None:
    assert not majority_reached([ballot(1, "42")], 3)
    assert majority_reached([ballot(1, "42"), ballot(2, "42")], 3)
    assert not majority_reached([ballot(1, "42"), ballot(2, "41")], 3)
    assert not majority_reached([ballot(1, "42"), ballot(2, "42")], 4)
    result = tally([ballot(1, "42"), ballot(2, "42")], 3)
    assert (
        result.summary
        == "2 of 3 attempts agree on '42'. 1 attempt was not needed: a majority had agreed."
    )
