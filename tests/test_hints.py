"""The notes the loop adds to failed cells (unit level; test_agent_e2e covers them in a real
kernel)."""

from __future__ import annotations

from typing import Any

from kernelagent.agent.hints import MAX_NAMES_LISTED, CellMemory, code_key
from kernelagent.execution.result import ExecutionResult


def notes(
    memory: CellMemory,
    code: str,
    result: ExecutionResult,
    number: int,
    manifest: dict[str, Any] | None = None,
) -> list[str]:
    return memory.record(
        "python", code, result, cell_number=number, cell_id=f"c{number}", manifest=manifest
    )


def failed(ename: str, evalue: str) -> ExecutionResult:
    error = {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}
    return ExecutionResult(status="error", outputs=[error], started_at=0.0, finished_at=1.0)


def ok() -> ExecutionResult:
    return ExecutionResult(status="ok", started_at=0.0, finished_at=1.0)


def test_a_successful_cell_gets_no_notes() -> None:
    assert notes(CellMemory(), "x = 1", ok(), 1) == []


def test_code_that_failed_is_a_repeat_until_the_kernel_changes() -> None:
    memory = CellMemory()
    code = "df = pd.read_csv('sales.csv')\ndf['revenue'].sum()"
    assert notes(memory, code, failed("KeyError", "'revenue'"), 1) == []
    # whitespace, blank lines, comments and formatting do not make it new code
    variant = "df = pd.read_csv( 'sales.csv' )   # load\n\n\ndf['revenue'].sum()\n"
    repeat = memory.repeat_of("python", variant)
    assert repeat is not None and (repeat.number, repeat.cell_id, repeat.error) == (
        1,
        "c1",
        "KeyError: 'revenue'",
    )
    # a cell that only prints changes nothing: still a repeat
    notes(memory, "print(df.columns)", ok(), 2, manifest={})
    assert memory.repeat_of("python", code) is not None
    # a cell that defines a name changes the kernel: the same code may work now
    notes(
        memory,
        "df['revenue'] = df.units * df.price",
        ok(),
        3,
        manifest={"df": {"type": "pandas.core.frame.DataFrame", "shape": [3, 3]}},
    )
    assert memory.repeat_of("python", code) is None


def test_a_repeat_run_after_a_change_that_fails_the_same_way_is_flagged() -> None:
    memory = CellMemory()
    notes(memory, "load()", failed("OSError", "disk"), 1)
    memory.forget_names()  # a restart changes the kernel
    [note] = notes(memory, "load()", failed("OSError", "disk"), 2)
    assert "same code as cell 1" in note and "change the approach" in note


def test_alternating_between_two_failing_fixes_lists_both_errors() -> None:
    memory = CellMemory()
    first, second = "df['d'].dt.month", "df['d'] = pd.to_datetime(df['d'])\ndf['d'].str[:4]"
    notes(memory, first, failed("AttributeError", "no .dt"), 1)
    notes(memory, second, failed("AttributeError", "no .str"), 2)
    assert memory.repeat_of("python", first) is not None
    both = memory.alternation_note()
    assert both is not None and both.startswith("[note] Your recent cells failed with: ")
    assert "cell 1: AttributeError: no .dt" in both and "cell 2: AttributeError: no .str" in both


def test_code_keys_ignore_formatting_but_not_meaning() -> None:
    assert code_key("python", "x=1\nprint( x )") == code_key("python", "x = 1  # one\n\nprint(x)")
    assert code_key("python", "print(x)") != code_key("python", "print(y)")
    assert code_key("python", "print(x") == code_key(
        "python", "print(x  "
    )  # unparsable: whitespace only
    assert code_key("shell", "ls  -la   # list") == code_key("shell", "ls -la")
    assert code_key("shell", "ls") != code_key("python", "ls")


def test_a_missing_column_lists_the_dataframes_columns() -> None:
    memory = CellMemory()
    memory.apply_manifest(
        {
            "orders": {
                "type": "pandas.core.frame.DataFrame",
                "shape": [5, 2],
                "columns": [["order_id", "int64"], ["customer_id", "int64"]],
            },
            "customers": {
                "type": "pandas.core.frame.DataFrame",
                "shape": [3, 2],
                "columns": [["customer_id", "int64"], ["segment", "object"]],
            },
        }
    )
    [note] = notes(memory, "orders['segment']", failed("KeyError", "'segment'"), 1)
    assert "It is a column of customers" in note
    assert "orders: order_id (int64), customer_id (int64)" in note
    [close] = notes(
        memory,
        "orders.customerid",
        failed("AttributeError", "'DataFrame' object has no attribute 'customerid'"),
        2,
    )
    assert "Did you mean 'customer_id'?" in close


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
    [note] = notes(memory, "data.head()", failed("NameError", "name 'data' is not defined"), 1)
    assert (
        note == "[note] 'data' is not defined. The kernel has: df (DataFrame 120x4), pd (module), "
        "totals (dict of 3)."
    )


def test_an_undefined_name_in_an_empty_kernel_says_so() -> None:
    [note] = notes(CellMemory(), "df.head()", failed("NameError", "name 'df' is not defined"), 1)
    assert "no variables are defined in the kernel yet" in note


def test_a_restart_forgets_the_names() -> None:
    memory = CellMemory()
    memory.apply_manifest({"df": {"type": "pandas.core.frame.DataFrame", "shape": [1, 1]}})
    memory.forget_names()
    [note] = notes(memory, "df", failed("NameError", "name 'df' is not defined"), 1)
    assert "no variables" in note


def test_a_long_namespace_is_cut_with_a_count() -> None:
    memory = CellMemory()
    memory.apply_manifest(
        {f"v{i:03d}": {"type": "builtins.int"} for i in range(MAX_NAMES_LISTED + 5)}
    )
    [note] = notes(memory, "w", failed("NameError", "name 'w' is not defined"), 1)
    assert note.endswith("and 5 more.")
    assert note.count("(int)") == MAX_NAMES_LISTED


def test_a_missing_module_says_nothing_can_be_installed_and_what_is_there() -> None:
    [note] = notes(
        CellMemory(),
        "import statsmodels.api as sm",
        failed("ModuleNotFoundError", "No module named 'statsmodels'"),
        1,
    )
    assert "'statsmodels' is not installed" in note
    assert "no network" in note and "pandas" in note and "scikit-learn" in note


def test_pandas_accessor_errors_get_their_usual_fix() -> None:
    memory = CellMemory()
    [dt_note] = notes(
        memory,
        "df['date'].dt.month",
        failed("AttributeError", "Can only use .dt accessor with datetimelike values"),
        1,
    )
    assert "pd.to_datetime" in dt_note and "parse_dates" in dt_note
    [str_note] = notes(
        memory,
        "df['date'].str[:4]",
        failed("AttributeError", "Can only use .str accessor with string values!"),
        2,
    )
    assert ".astype(str)" in str_note
