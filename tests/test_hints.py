"""The notes the loop adds to failed cells (unit level; test_agent_e2e covers them in a real kernel)."""

from __future__ import annotations

from kernelagent.agent.hints import MAX_NAMES_LISTED, CellMemory
from kernelagent.execution import ExecutionResult


def failed(ename: str, evalue: str) -> ExecutionResult:
    error = {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}
    return ExecutionResult(status="error", outputs=[error], started_at=0.0, finished_at=1.0)


def ok() -> ExecutionResult:
    return ExecutionResult(status="ok", started_at=0.0, finished_at=1.0)


def test_a_successful_cell_gets_no_notes() -> None:
    assert CellMemory().notes("x = 1", ok(), 1) == []


def test_the_same_code_failing_the_same_way_is_flagged_with_the_first_cell() -> None:
    memory = CellMemory()
    code = "df = pd.read_csv('sales.csv')\ndf['revenue'].sum()"
    assert memory.notes(code, failed("KeyError", "'revenue'"), 1) == []
    memory.notes("print(1/0)", failed("ZeroDivisionError", "division by zero"), 2)
    # trailing spaces and blank lines do not make it new code
    again = memory.notes(code.replace("\n", "  \n\n") + "\n", failed("KeyError", "'revenue'"), 3)
    assert "same code as cell 1" in again[0] and "change the approach" in again[0]
    assert "cell 1: KeyError: 'revenue'; cell 2: ZeroDivisionError" in again[1]


def test_alternating_between_two_failing_fixes_lists_both_errors() -> None:
    memory = CellMemory()
    first, second = "df['d'].dt.month", "df['d'] = pd.to_datetime(df['d'])\ndf['d'].str[:4]"
    dt_error, str_error = failed("AttributeError", "no .dt"), failed("AttributeError", "no .str")
    memory.notes(first, dt_error, 1)
    memory.notes(second, str_error, 2)
    repeat, both = memory.notes(first, dt_error, 3)
    assert "same code as cell 1" in repeat
    assert both.startswith("[note] Your recent cells failed with: ")
    assert "AttributeError: no .dt" in both and "AttributeError: no .str" in both


def test_the_same_code_failing_differently_is_not_called_a_repeat() -> None:
    memory = CellMemory()
    memory.notes("load()", failed("OSError", "disk"), 1)
    assert memory.notes("load()", failed("ValueError", "bad row"), 2) == []


def test_an_undefined_name_lists_what_the_kernel_has() -> None:
    memory = CellMemory()
    memory.apply_manifest(
        {
            "df": {"type": "pandas.core.frame.DataFrame", "shape": [120, 4]},
            "pd": {"type": "builtins.module", "hash": "pandas"},
            "totals": {"type": "builtins.dict", "len": 3},
            "gone": {"type": "builtins.int"},
        }
    )
    memory.apply_manifest({"gone": {"deleted": True}})
    [note] = memory.notes("data.head()", failed("NameError", "name 'data' is not defined"), 1)
    assert note == "[note] 'data' is not defined. The kernel has: df (DataFrame 120x4), pd (module), totals (dict of 3)."


def test_an_undefined_name_in_an_empty_kernel_says_so() -> None:
    [note] = CellMemory().notes("df.head()", failed("NameError", "name 'df' is not defined"), 1)
    assert "no variables are defined in the kernel yet" in note


def test_a_restart_forgets_the_names() -> None:
    memory = CellMemory()
    memory.apply_manifest({"df": {"type": "pandas.core.frame.DataFrame", "shape": [1, 1]}})
    memory.forget_names()
    [note] = memory.notes("df", failed("NameError", "name 'df' is not defined"), 1)
    assert "no variables" in note


def test_a_long_namespace_is_cut_with_a_count() -> None:
    memory = CellMemory()
    memory.apply_manifest({f"v{i:03d}": {"type": "builtins.int"} for i in range(MAX_NAMES_LISTED + 5)})
    [note] = memory.notes("w", failed("NameError", "name 'w' is not defined"), 1)
    assert note.endswith("and 5 more.")
    assert note.count("(int)") == MAX_NAMES_LISTED


def test_a_missing_module_says_nothing_can_be_installed_and_what_is_there() -> None:
    [note] = CellMemory().notes(
        "import statsmodels.api as sm", failed("ModuleNotFoundError", "No module named 'statsmodels'"), 1
    )
    assert "'statsmodels' is not installed" in note
    assert "no network" in note and "pandas" in note and "scikit-learn" in note


def test_pandas_accessor_errors_get_their_usual_fix() -> None:
    memory = CellMemory()
    [dt_note] = memory.notes(
        "df['date'].dt.month", failed("AttributeError", "Can only use .dt accessor with datetimelike values"), 1
    )
    assert "pd.to_datetime" in dt_note and "parse_dates" in dt_note
    [str_note] = memory.notes(
        "df['date'].str[:4]", failed("AttributeError", "Can only use .str accessor with string values!"), 2
    )
    assert ".astype(str)" in str_note
