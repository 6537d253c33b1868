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
        == "No attempt answered: attempt 1: failed (KeyError: 'city'); attempt 2: failed "
        "(KeyError: 'city')."
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


QUESTION = "Which region has the highest total revenue in 2024? Name the top 3 products too."


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("The region with the highest total revenue is: West", "West", True),
        ("The region with the highest total revenue is likely West.", "**West**", True),
        ("The region with the highest total revenue is East", "West", False),
        (
            "In 2024 the total revenue was 1,234.5",
            "1234.5",
            True,
        ),  # the question's 2024 is not the answer
        ("In 2024 the total revenue was 1,234.5", "1250", False),
        ("The top 3 products are Widget, Gadget and Doohickey", "widget, doohickey, gadget", True),
        ("The top 3 products are Widget, Gadget and Doohickey", "Widget, Gadget", False),
        (
            "3",
            "The top 3",
            True,
        ),  # nothing but the question's words is left: the whole answer counts
        ("region", "West", False),
    ],
)
def test_sentences_are_compared_by_what_they_add_to_the_question(
    first: str, second: str, agree: bool
) -> None:
    assert answers_agree(first, second, QUESTION) is agree
    assert answers_agree(second, first, QUESTION) is agree


def test_a_majority_of_differently_worded_answers_is_found() -> None:
    ballots = [
        ballot(1, "The region with the highest total revenue is: West"),
        ballot(2, "The region with the highest total revenue is likely West."),
        ballot(3, "East"),
    ]
    result = tally(ballots, 3, QUESTION)
    assert (result.chosen, result.agreeing, result.majority) == (1, [1, 2], True)
    assert majority_reached(ballots[:2], 3, QUESTION)
    terse = [ballots[0], ballot(2, "West")]
    assert majority_reached(terse, 3, QUESTION)
    assert not majority_reached(terse, 3)  # without the question, the words differ


def test_a_tie_goes_to_the_attempt_with_fewer_failed_cells() -> None:
    ballots = [
        Ballot(1, "completed", "1", True, failed_cells=3),
        Ballot(2, "completed", "2", True, failed_cells=0),
        Ballot(3, "completed", "3", True, failed_cells=1),
    ]
    result = tally(ballots, 3)
    assert (result.chosen, result.answer, result.majority) == (2, "2", False)
    assert "the attempt with the fewest failed cells" in result.summary
    even = [Ballot(1, "completed", "1", True, failed_cells=1), Ballot(2, "completed", "2", True)]
    assert tally([*even, Ballot(3, "completed", "1", True, failed_cells=5)], 3).chosen == 1


def test_a_tie_goes_to_the_attempt_whose_code_used_every_number_of_the_question() -> None:
    """Attempt 1 filtered "greater than 200" only in a comment; attempt 2's code used it;
    attempt 3 used it too, but a cell of it failed."""
    ballots = [
        Ballot(1, "completed", "157891.43", True, ignored_numbers=("200",)),
        Ballot(2, "completed", "65691.88", True),
        Ballot(3, "completed", "0.0", True, failed_cells=1),
    ]
    result = tally(ballots, 3, "What is the total amount of the orders greater than 200?")
    assert (result.chosen, result.answer, result.majority) == (2, "65691.88", False)
    assert result.summary.startswith(
        "No majority: 1 of 3 attempts agree on '65691.88'; the session keeps it: its code uses "
        "every number of the question, and attempt 1's does not use 200."
    )
    assert "attempt 1 answered '157891.43'; attempt 3 answered '0.0'" in result.summary
    # a majority is not overruled: two attempts that agree win over one that used 200
    agreeing = [ballots[0], Ballot(2, "completed", "157891.43", True, ignored_numbers=("200",))]
    assert tally([*agreeing, ballots[1]], 3).answer == "157891.43"


def test_what_a_silent_attempt_printed_supports_an_answer_but_never_leads_one() -> None:
    """An attempt whose code printed one value but that never stated an accepted answer
    (a small model stuck on a guess) counts for the answer its output agrees with."""
    stuck = Ballot(3, "failed", detail="kept answering '464.3'", printed="65691.88")
    result = tally([ballot(1, "157891.43"), ballot(2, "65691.88"), stuck], 3)
    assert (result.chosen, result.answer, result.agreeing, result.majority) == (
        2,
        "65691.88",
        [2, 3],
        True,
    )
    assert result.summary == (
        "2 of 3 attempts agree on '65691.88' (attempt 3 by what its code printed, not by a "
        "stated answer). attempt 1 answered '157891.43'."
    )
    assert majority_reached([ballot(2, "65691.88"), stuck], 3)
    # alone, a printed value is no answer: nobody stated it
    alone = tally([ballot(1, None), Ballot(2, "failed", printed="12")], 2)
    assert alone.chosen is None and alone.answer is None
    # and one that agrees with nothing changes nothing
    other = Ballot(3, "failed", printed="7")
    assert tally([ballot(1, "1"), ballot(2, "2"), other], 3).agreeing == [1]


def test_when_no_attempt_states_an_answer_a_majority_of_printed_values_is_taken() -> None:
    """Attempts that computed the same value and then kept guessing something else: the
    value their code printed, agreed by a strict majority, is the answer, and said so."""
    names = "['Bruno Eriksen', 'Chen Lopez']"
    stuck = [
        Ballot(1, "failed", detail="kept answering 'Tariq Costa'", printed=names),
        Ballot(
            2, "failed", detail="kept answering 'Tariq Costa'", printed="Chen Lopez, Bruno Eriksen"
        ),
        Ballot(3, "paused", detail="reached the step limit"),
    ]
    result = tally(stuck, 3)
    assert (result.chosen, result.answer, result.agreeing, result.majority) == (
        1,
        names,
        [1, 2],
        True,
    )
    assert result.summary.startswith(
        "No attempt stated an answer its outputs show; 2 of 3 attempts' code printed"
    )
    assert "attempt 3 paused (reached the step limit)" in result.summary
    # one printed value of three is not enough
    assert tally([stuck[0], stuck[2], ballot(4, None)], 3).answer is None
