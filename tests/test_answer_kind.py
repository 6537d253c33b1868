"""Whether an answer is the kind of thing its question asks for (``agent.answer_kind``), and
the question's numbers that no code used: the functions, then sessions on the scripted model
with kernels in the Docker sandbox."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from kernelagent.agent.answer_kind import (
    asked_thing,
    listed_options,
    mismatch,
    numbers_not_in_code,
    reports_failure,
    row_label,
    shows_an_object,
)
from kernelagent.testing import ScriptedTurn
from tests.test_answers import SALES, code_cells, last_input, run_script

SERIES = "month\nJanuary      1200.50\nApril       21356.29\nName: increase, dtype: float64"
FRAME = "  department  avg_salary\n0  Engineering    91234.5\n1       Sales    70000.0"


@pytest.mark.parametrize(
    ("question", "options"),
    [
        (
            "which of the columns tv_spend, online_spend and radio_spend has the strongest "
            "correlation with sales?",
            ["tv_spend", "online_spend", "radio_spend"],
        ),
        ("Which of East and West sold more?", ["East", "West"]),
        ("Which of these: `a`, `b`, or `c` is largest?", ["a", "b", "c"]),
        ("Which one of north or south grew?", ["north", "south"]),
        ("Which region has the highest revenue?", []),
        ("Which of the regions grew the most?", []),
    ],
)
def test_the_options_a_question_lists(question: str, options: list[str]) -> None:
    assert listed_options(question) == options


def test_an_answer_outside_the_listed_options_is_named_as_such() -> None:
    question = "Which of the columns tv, radio and online correlates most with sales?"
    wrong = mismatch(question, "sales", "")
    assert wrong is not None
    assert wrong.detail == "none of the options the question lists (tv, radio, online)"
    assert "your answer 'sales' is none of them" in wrong.message


@pytest.mark.parametrize("answer", ["tv", "TV", "`radio`", "The answer is online (r=0.8)."])
def test_an_answer_naming_an_option_passes(answer: str) -> None:
    question = "Which of the columns tv, radio and online correlates most with sales?"
    assert mismatch(question, answer, "") is None


@pytest.mark.parametrize(
    ("text", "failure"),
    [
        ("Error: 'segment' is not a column in orders DataFrame.", True),
        ("KeyError: 'segment'", True),
        ("Traceback (most recent call last):", True),
        ("The region column was not found", True),
        ("Cannot compute this from the data", True),
        ("West", False),
        ("43", False),
        ("Errors: 5", False),  # a count of errors is a result
        ("error rate 0.3", False),
        ("3 orders could not be matched", False),  # a number: a result about failures
    ],
)
def test_a_failure_reported_instead_of_an_answer(text: str, failure: bool) -> None:
    assert reports_failure(text) is failure


@pytest.mark.parametrize(
    ("text", "an_object"),
    [
        ("<Figure size 1000x600 with 1 Axes>", True),
        ("<Axes: title={'center': 'Revenue by month'}, xlabel='month'>", True),
        ("`<matplotlib.axes._subplots.AxesSubplot at 0x7f3a2c1b5d30>`", True),
        ("<pandas.core.groupby.generic.DataFrameGroupBy object at 0x7f00>", True),
        ("West", False),
        ("<5", False),
        ("West (<Figure size 640x480 with 1 Axes>)", False),  # an answer with a repr beside it
        ("1 < 2 and 3 > 2", False),
    ],
)
def test_how_python_shows_an_object_is_not_a_value(text: str, an_object: bool) -> None:
    assert shows_an_object(text) is an_object


def test_the_thing_a_which_question_asks_for() -> None:
    assert asked_thing("Compute monthly revenue. Which month had the largest increase?") == "month"
    assert asked_thing("Which is larger?") is None
    assert asked_thing("What is the total revenue?") is None


def test_the_label_of_the_row_whose_value_is_the_answer() -> None:
    assert row_label("21356.29", SERIES) == ("April", "April       21356.29")
    assert row_label("91234.5", FRAME) == ("Engineering", "0  Engineering    91234.5")
    assert row_label("999", SERIES) is None  # no row shows it
    assert row_label("180", "hour\n14    120\n15    180") is None  # the rows' labels are numbers
    assert row_label("5", "East    5\nWest    5") is None  # two rows, two labels: which one?
    assert row_label("7", "Total revenue:    7") is None  # a caption, not a row label


def test_a_number_answering_a_which_question_is_sent_back_with_the_label() -> None:
    question = "Which month had the largest increase in revenue?"
    wrong = mismatch(question, "21356.29", SERIES)
    assert wrong is not None
    assert "the row labelled 'April'" in wrong.message and "April       21356.29" in wrong.message
    assert mismatch(question, "April", SERIES) is None
    assert mismatch(question, "21356.29", "21356.29") is None  # printed alone: nothing to offer
    assert mismatch("What is the largest increase?", "21356.29", SERIES) is None


def test_the_numbers_of_a_question_that_no_code_uses() -> None:
    question = "What is the total amount of the completed orders whose amount is greater than 200?"
    completed = "done = df[df.status == 'completed']  # completed orders with amount > 200"
    assert numbers_not_in_code(question, [completed, "print(done.amount.sum())"]) == ["200"]
    assert numbers_not_in_code(question, ["df[df.amount > 200.0].amount.sum()"]) == []
    assert numbers_not_in_code(question, ["%matplotlib inline\ndf.query('amount > 200')"]) == []
    question = "Which cities have more than 40 customers in 2023? List the top 3, and 1.5."
    assert numbers_not_in_code(question, ["c[c > 40]", "d[d.year == 2_023].head(3)"]) == ["1.5"]
    # percentages, precisions and numbers inside names are not conditions of the data
    assert numbers_not_in_code("In sales_2020.csv, what is 10% of S1's Q4 total?", []) == []
    assert numbers_not_in_code("Round to 2 decimals (3 significant digits, 4 digits).", []) == []
    assert numbers_not_in_code("Orders on 2023-01-15?", ["pd.Timestamp('2023-01-15')"]) == []


def region_totals(column: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    with SALES.open() as rows:
        for row in csv.DictReader(rows):
            totals[row["region"]] = totals.get(row["region"], 0.0) + float(row[column])
    return totals


async def test_an_answer_that_is_none_of_the_listed_options_is_sent_back_once(
    docker_available: None, tmp_path: Path
) -> None:
    units = region_totals("units")
    better = max(("East", "North"), key=units.__getitem__)
    everywhere = max(units, key=units.__getitem__)
    assert everywhere not in ("East", "North")  # what a careless model answers instead
    by_region = (
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
        "print(df.groupby('region')['units'].sum())"
    )
    script = [
        ScriptedTurn.python(by_region),
        ScriptedTurn.final(everywhere),  # printed, but not one of the two asked about
        ScriptedTurn.final(better),
    ]
    question = "Which of the regions East and North sold more units?"
    result, notebook, requests = await run_script(script, tmp_path, question, check_answers=True)
    assert (result.status, result.answer) == ("completed", better)
    sent_back = last_input(requests[2])
    assert f"which of East, North; your answer {everywhere!r} is none of them" in sent_back
    reviews = notebook.metadata.kernelagent.answer_reviews
    assert [review["verdict"] for review in reviews] == ["not_what_was_asked", "accepted"]
    assert reviews[0]["detail"] == "none of the options the question lists (East, North)"


async def test_a_number_for_a_which_question_is_sent_back_with_the_rows_label(
    docker_available: None, tmp_path: Path
) -> None:
    totals = region_totals("revenue")
    top = max(totals, key=totals.__getitem__)
    value = f"{totals[top]:.2f}"
    by_region = (
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
        "print(df.groupby('region')['revenue'].sum().round(2))"
    )
    script = [ScriptedTurn.python(by_region), ScriptedTurn.final(value), ScriptedTurn.final(top)]
    question = "Which region has the highest total revenue?"
    result, notebook, requests = await run_script(script, tmp_path, question, check_answers=True)
    assert (result.status, result.answer) == ("completed", top)
    sent_back = last_input(requests[2])
    assert f"your answer {value} is a number" in sent_back
    assert f"the value of the row labelled {top!r}" in sent_back
    reviews = notebook.metadata.kernelagent.answer_reviews
    assert [review["verdict"] for review in reviews] == ["not_what_was_asked", "accepted"]


async def test_the_verification_turn_names_numbers_of_the_question_no_code_used(
    docker_available: None, tmp_path: Path
) -> None:
    with SALES.open() as rows:
        units = [int(row["units"]) for row in csv.DictReader(rows)]
    everything, big = str(len(units)), str(sum(count > 30 for count in units))
    assert everything != big
    script = [
        ScriptedTurn.python(  # counts every row: leaves out the question's condition
            "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(len(df))"
        ),
        ScriptedTurn.final(everything),
        ScriptedTurn.python("print((df['units'] > 30).sum())"),
        ScriptedTurn.final(big),
    ]
    question = "How many sales had more than 30 units?"
    result, _notebook, requests = await run_script(script, tmp_path, question, verify_answers=True)
    assert (result.status, result.answer) == ("completed", big)
    check = last_input(requests[2])
    assert "The question mentions 30, and no code of this task uses it" in check
    assert "print(len(df))" in check


MISSING_COLUMN = (
    "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
    "if 'city' not in df.columns:\n    print(\"Error: 'city' is not a column\")"
)


async def test_an_error_given_as_the_answer_is_sent_back(
    docker_available: None, tmp_path: Path
) -> None:
    script = [
        ScriptedTurn.python(MISSING_COLUMN),
        ScriptedTurn.final("Error: 'city' is not a column"),
        ScriptedTurn.python("print(df['region'].nunique())"),
        ScriptedTurn.final("4"),
    ]
    question = "How many regions are there?"
    result, notebook, requests = await run_script(script, tmp_path, question, check_answers=True)
    assert (result.status, result.answer) == ("completed", "4")
    assert "reports a problem, not an answer to the question" in last_input(requests[2])
    reviews = notebook.metadata.kernelagent.answer_reviews
    assert [review["verdict"] for review in reviews] == ["reports_failure", "accepted"]


async def test_a_model_that_only_reports_the_error_ends_failed_not_completed(
    docker_available: None, tmp_path: Path
) -> None:
    # the error line its cell printed is not taken as the answer either
    script = [ScriptedTurn.python(MISSING_COLUMN)] + [
        ScriptedTurn.final("Error: 'city' is not a column")
    ] * 6
    question = "How many cities are there?"
    result, notebook, _requests = await run_script(script, tmp_path, question, check_answers=True)
    assert (result.status, result.answer) == ("failed", None)
    assert "no usable action" in result.reason
    verdicts = {review["verdict"] for review in notebook.metadata.kernelagent.answer_reviews}
    assert verdicts == {"reports_failure"}


PLOT = (
    "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
    "df.groupby('region')['revenue'].sum().plot(kind='bar')"
)


async def test_a_plot_shown_as_the_answer_is_sent_back_and_never_taken_from_the_output(
    docker_available: None, tmp_path: Path
) -> None:
    # the plotting cell's last line displays "<AxesSubplot: xlabel='region'>" (matplotlib
    # 3.6; "<Axes: ...>" in newer ones) beside the image
    script = [
        ScriptedTurn.python(PLOT),
        ScriptedTurn.final("<AxesSubplot: xlabel='region'>"),
        ScriptedTurn.python("print(df.groupby('region')['revenue'].sum().idxmax())"),
        ScriptedTurn.final("West"),
    ]
    question = "Which region has the highest total revenue? Plot it."
    result, notebook, requests = await run_script(script, tmp_path, question, check_answers=True)
    shown = code_cells(notebook)[0].outputs[0]["data"]["text/plain"]
    assert re.fullmatch(r"<Axes(Subplot)?: xlabel='region'>", shown)
    assert (result.status, result.answer) == ("completed", "West")
    assert "is how Python shows an object (a plot, a figure)" in last_input(requests[2])
    reviews = notebook.metadata.kernelagent.answer_reviews
    assert [review["verdict"] for review in reviews] == ["not_what_was_asked", "accepted"]
    assert reviews[0]["detail"] == "how Python shows an object, not a value"
