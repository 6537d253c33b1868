"""The system prompt and the short messages the loop sends the model."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from kernelagent.sandbox.images import DATA_LIBRARIES

LIBRARIES = ", ".join(DATA_LIBRARIES)

SYSTEM_PROMPT = """\
You are a careful data analyst working in a live Jupyter (IPython) kernel.

How to work:
- Act with the `python` tool: each call runs one notebook cell in a persistent kernel, so
  variables, imports and loaded data stay available to later cells. Keep cells short and
  look at results before the next step.
- Your working directory is the workspace `{workspace}`; input files are there. Files you
  write there are kept. {files}
- {libraries} are installed.{imported} There is no internet access: do not try to install
  packages or download data.
- Inspect data before computing with it (shape, dtypes, head, missing values).
- When a cell fails, read the traceback and fix the cause; do not repeat the same code.
- Use the `shell` tool only for shell work (listing or moving files).
- When you know the answer, call `final_answer` with it, in the format the task asks for.
  Base it on numbers you computed, not on guesses.
"""

NO_ACTION_NUDGE = (
    "You did not call a tool. Run code with the `python` tool, or call `final_answer` "
    "when you have the answer."
)

ANSWER_WITHOUT_EVIDENCE = (
    "[not accepted yet] No code has run successfully for this task yet. Compute the answer "
    "from the data in the workspace first (load it, check its columns, fix any error), then "
    "give the final answer."
)

ANSWER_NOT_SHOWN = (
    "[not accepted yet] {parts} does not appear in any output of the code you ran. If you "
    "computed it, print it; if not, compute it. Then give the final answer again."
)

WRITTEN_NOT_COMPUTED = (
    "the cell that shows it only prints text written into its own code, which computes "
    "nothing from the data"
)

ANSWER_REPORTS_FAILURE = (
    "[not accepted yet] {answer} reports a problem, not an answer to the question. Find out "
    "what the data has (print each file's columns: a column missing from one file may be in "
    "another, joined on a key they share), fix the code, and answer with the result it prints."
)

ANSWER_SHOWS_AN_OBJECT = (
    "[not accepted yet] {answer} is how Python shows an object (a plot, a figure), not an "
    "answer to the question. Print the value your code computed (the name, the number) and "
    "answer with it."
)

ANSWER_BEFORE_OUTPUT = (
    "Answer {answer} not accepted: it was written in the same reply as the code, before the "
    "code's output existed, and {why}. {printed}{act}"
)
"""{printed} is the cells' output when they succeeded; {act} what to reply (see below)."""

ANSWER_SENT_BACK_AGAIN = (
    "Answer {answer} not accepted: it was sent back before, and it still does not appear in "
    "any output of the code you ran. Do not repeat it. {printed}{act}"
)

BEFORE_OUTPUT_ACT_BLOCKS = (
    "If this output answers the question, reply with only the line "
    "`FINAL ANSWER: <the answer, taken from the output>`; otherwise reply with one corrected "
    "```python block."
)

BEFORE_OUTPUT_ACT_TOOLS = (
    "If this output answers the question, call final_answer with the answer taken from it; "
    "otherwise run corrected code."
)

GUESS_AGAIN_ACT_BLOCKS = (
    "Your answer differs from what your code printed, so one of them is wrong. If the code is "
    "right, reply with only the line `FINAL ANSWER: <the answer, taken from the output>`. If "
    "your answer is right, the code is not: reply with one corrected ```python block that "
    "computes the answer from the data and prints it."
)

GUESS_AGAIN_ACT_TOOLS = (
    "Your answer differs from what your code printed, so one of them is wrong. If the code is "
    "right, call final_answer with the answer taken from its output. If your answer is right, "
    "the code is not: run corrected code that computes the answer from the data and prints it."
)

VERIFY_ANSWER = """\
[check before the answer is accepted] Question: {question}

The code that produced your answer:
```python
{code}
```
Its output:
{output}

Your answer: {answer}
{unused}
Does this code compute exactly what the question asks (the right columns, filters, grouping,
time period and format)? If it does, {how}. If it does not, reply with {fix} instead."""

UNUSED_NUMBERS = (
    "\nThe question mentions {numbers}, and no code of this task uses {them}: if {it_is} a "
    "condition of the question (a threshold, a year, a count), the code must apply {them}.\n"
)

REPEATED_FAILURE = (
    "[not run] This code is the same as cell {number}, which failed with: {error}. Running it "
    "again would fail the same way, so it was not run. Write different code that fixes the "
    "cause."
)

REPEATED_SUCCESS = (
    "[not run] This code is the same as cell {number}, which just ran and printed:\n{output}\n"
    "Running it again would print the same, so it was not run. {act}"
)

AFTER_ERROR_NUDGE = (
    "Your last cell failed with: {error}. Do not give up and do not ask for data: the files "
    "are in the workspace ({files}). {act}"
)

KERNEL_DIED = (
    "The kernel died while running your last cell ({reason}). A new kernel was started; "
    "{restored} Avoid repeating what killed it (e.g. use less memory)."
)


CODE_BLOCK_SYSTEM_PROMPT = """\
You are a careful data analyst. You answer by running Python code in a live Jupyter kernel
and reading its output. You never guess: every number in your answer comes from code you ran.

Your working directory is `{workspace}`. {files} {libraries} are installed;
there is no internet access.{imported} Variables persist between your code blocks.

Each reply is EITHER one ```python block (it runs, and you get its output in the next
message) OR, once you have computed the answer, one line `FINAL ANSWER: <answer>`.

Example of the protocol (the file and the question are only an example):

User: How many rows does data.csv have?
Assistant:
```python
import pandas as pd
df = pd.read_csv('data.csv')
print(df.shape)
print(df.head())
```
User: Output: (120, 4) ...
Assistant: FINAL ANSWER: 120
"""


PREVIEW_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".md")


def file_previews(workspace: Path, files: list[str], lines: int = 3, width: int = 200) -> str:
    """The first lines of small text files, so the model sees column names up front."""
    previews = []
    for name in files[:10]:
        path = workspace / name
        if not path.is_file() or path.suffix.lower() not in PREVIEW_SUFFIXES:
            continue
        with path.open(errors="replace") as file:
            head = [file.readline().rstrip("\n")[:width] for _ in range(lines)]
        shown = "\n".join(f"    {line}" for line in head if line)
        previews.append(f"{name} ({path.stat().st_size} bytes) begins:\n{shown}")
        if path.suffix.lower() in (".csv", ".tsv") and (
            dates := date_columns(head, path.suffix.lower())
        ):
            listed = ", ".join(repr(column) for column in dates)
            previews.append(
                f"    ({listed} hold{'s' if len(dates) == 1 else ''} dates as text: read with "
                f"pd.read_csv({name!r}, parse_dates=[{listed}]) to use .dt)"
            )
    return ("\n" + "\n".join(previews) + "\n") if previews else ""


_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$")


def date_columns(head: list[str], suffix: str) -> list[str]:
    """Columns whose values in the previewed rows all look like ISO dates."""
    rows = list(
        csv.reader([line for line in head if line], delimiter="\t" if suffix == ".tsv" else ",")
    )
    if len(rows) < 2:
        return []
    header, values = rows[0], rows[1:]
    return [
        column
        for index, column in enumerate(header)
        if all(index < len(row) and _DATE_TEXT.match(row[index].strip()) for row in values)
    ]


def system_prompt(
    workspace: str,
    files: list[str],
    *,
    code_blocks: bool = False,
    host_workspace: Path | None = None,
    imported: str = "",
) -> str:
    """``imported``: names the kernel already has (the warm-up's), e.g. ``pd (pandas)``."""
    listed = f"Files: {', '.join(files)}." if files else "The workspace starts empty."
    if host_workspace is not None and files:
        listed += file_previews(host_workspace, files)
    template = CODE_BLOCK_SYSTEM_PROMPT if code_blocks else SYSTEM_PROMPT
    already = f" Already imported in the kernel: {imported}." if imported else ""
    return template.format(workspace=workspace, files=listed, libraries=LIBRARIES, imported=already)
