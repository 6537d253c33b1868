"""Hostile input: huge code, unicode and control characters in code, file names and outputs.

Whatever the cell contains, the host gets a result that is valid nbformat output and
serialises to JSON.
"""

from __future__ import annotations

import json
import os

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from kernelagent.execution.result import ExecutionResult
from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import peak_rss, probe, short
from tests.adversarial.conftest import Record


def _notebook_problem(result: ExecutionResult) -> str | None:
    """None if the outputs form a valid notebook that round-trips through JSON."""
    try:
        json.dumps(result.model_dump(), allow_nan=False)
        outputs = [nbformat.from_dict(output) for output in result.outputs]
        cell = new_code_cell("...", outputs=outputs, execution_count=result.execution_count)
        notebook = new_notebook(cells=[cell])
        nbformat.validate(notebook)
        text = nbformat.writes(notebook)
        back = nbformat.reads(text, as_version=4)
        if back.cells[0].outputs != notebook.cells[0].outputs:
            return "outputs changed in the JSON round trip"
    except Exception as error:
        return f"{type(error).__name__}: {str(error)[:120]}"
    return None


async def test_100mb_code_string(sandbox: Sandbox, record: Record) -> None:
    """Send a 100 MB cell (a 100 MB string literal)"""
    record(
        expected="runs, or fails cleanly with a reported reason (e.g. the kernel OOM-killed while "
        "parsing it); the host stays bounded; the sandbox can be restarted and works"
    )
    code = "x = '" + "a" * 100_000_000 + "'\nprint(len(x))"
    async with peak_rss() as host:
        result = await sandbox.execute(code, timeout=60)
    del code
    record(observed=f"{short(result)}, host RSS growth {host['growth']:.0f} MB")
    assert result.status in ("ok", "error", "kernel_died", "timeout")
    if result.status != "ok":
        assert result.detail or result.status == "error"
    assert host["growth"] < 700
    if result.status == "kernel_died":
        await sandbox.restart()
    after = await sandbox.execute("1 + 1", timeout=20)
    record.observe(f"afterwards: {short(after)}")
    assert after.ok


async def test_unicode_and_control_characters_in_code(sandbox: Sandbox, record: Record) -> None:
    """Code with unicode identifiers, emoji, RTL override, zero-width and control characters"""
    record(expected="runs as written; outputs are valid nbformat and JSON")
    code = (
        "π = 3.14159\n"
        "名前 = 'データ 😀 \u202eevil\u202c \u200b zero-width'\n"
        "# comment with ESC \x1b[31m red \x1b[0m, bell \x07, backspace \x08 and a form feed \x0c\n"
        "s = 'tab\\t cr\\r nul\\x00 esc\\x1b[2J'\n"
        "print(π, 名前, repr(s))"
    )
    result = await sandbox.execute(code, timeout=20)
    problem = _notebook_problem(result)
    record(
        observed=f"{short(result)}, output {result.text().strip()[:60]!r}; notebook problem: "
        f"{problem}"
    )
    assert result.ok, result.text()
    assert "3.14159" in result.text() and "😀" in result.text()
    assert problem is None


async def test_nul_byte_in_code(sandbox: Sandbox, record: Record) -> None:
    """A raw NUL byte in the cell's source"""
    record(
        expected="a clean error result (status=error, SyntaxError/ValueError shown) without a "
        "stall; "
        "the kernel keeps working"
    )
    result = await sandbox.execute("x = 1\x00\nprint(x)", timeout=20)
    ename = next((o.get("ename") for o in result.outputs if o["output_type"] == "error"), None)
    after = await sandbox.execute("1 + 1", timeout=20)
    problem = _notebook_problem(result)
    record(
        observed=f"{short(result)} after {result.duration:.1f} s, outputs={len(result.outputs)}, "
        f"error shown={ename}; next cell: {short(after)}; notebook problem: {problem}"
    )
    status, took = result.status, result.duration
    assert after.ok
    assert problem is None
    assert status == "error", "a cell that never got an execute_reply is reported as ok"
    assert took < 5


NAMES = {
    "emoji": "emoji-😀🔥.txt",
    "newline": "new\nline.txt",
    "rtl": "invoice-\u202egnp.exe",
    "ansi": "ansi-\x1b[31mred\x1b[0m-\x07.txt",
    "leading-dash": "-rf",
    "non-utf8": "latin1-\udce9.txt",  # the bytes b'latin1-\xe9.txt' (invalid UTF-8)
}


async def test_hostile_file_names(sandbox: Sandbox, record: Record) -> None:
    """Create workspace files named with emoji, newline, RTL override, ANSI escapes, a leading
    dash and invalid UTF-8"""
    record(
        expected="files are created; the host sees exactly the same names (bytes) in the workspace "
        "and can copy them out; listing them in a cell gives valid output"
    )
    out = await probe(
        sandbox,
        f"""
        import os
        out['created'] = []
        for key, name in {NAMES!r}.items():
            with open(os.fsencode(name), 'w') as f:
                f.write(key)
            out['created'].append(key)
        """,
    )
    host = {os.fsencode(name) for name in os.listdir(sandbox.workspace)}
    missing = [key for key, name in NAMES.items() if os.fsencode(name) not in host]
    copied = sandbox.get_file(NAMES["emoji"], sandbox.workspace.parent / "copied.txt").read_text()
    listing = await sandbox.execute(
        "import os\nfor n in sorted(os.listdir('.')): print(repr(n))", timeout=20
    )
    problem = _notebook_problem(listing)
    record(
        observed=f"created {len(out['created'])}/{len(NAMES)}; missing on the host: "
        f"{missing or 'none'}; "
        f"get_file(emoji name) -> {copied!r}; listing cell: {short(listing)}, notebook problem: "
        f"{problem}"
    )
    assert missing == []
    assert copied == "emoji"
    assert listing.ok and problem is None


async def test_control_characters_in_outputs(sandbox: Sandbox, record: Record) -> None:
    """Print NUL, ANSI escapes, CR/backspace, RTL override and emoji to stdout, stderr, a
    display_data and an exception message"""
    record(expected="the result keeps the characters, is JSON-serialisable and valid nbformat")
    code = (
        "import sys\n"
        "from IPython.display import display\n"
        "print('\\x00\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07 \\r overwrite \\x08\\x08 \\u202eevil "
        "😀')\n"
        "sys.stderr.write('err \\x00\\x1b[2J\\x1bc\\n')\n"
        "display({'text/plain': 'disp \\x00 \\x1b[5m', 'text/html': "
        "'<script>alert(1)</script>\\x00'}, raw=True)\n"
        "raise ValueError('boom \\x00\\x1b[31m \\u202e')"
    )
    result = await sandbox.execute(code, timeout=20)
    problem = _notebook_problem(result)
    kinds = [o["output_type"] for o in result.outputs]
    nul_kept = "\x00" in result.outputs[0].get("text", "") if result.outputs else False
    record(
        observed=f"{short(result)}, outputs={kinds}, NUL kept in stdout: {nul_kept}; notebook "
        f"problem: {problem}"
    )
    assert result.status == "error"
    assert {"stream", "display_data", "error"} <= set(kinds)
    assert nul_kept
    assert problem is None


async def test_lone_surrogate_in_output(sandbox: Sandbox, record: Record) -> None:
    """Print and display strings containing a lone surrogate ('\\ud800', not encodable as UTF-8)"""
    record(
        expected="the kernel cannot encode it (its own output is lost or an error is shown), but "
        "the "
        "cell completes, the host result is valid, and later output arrives"
    )
    first = await sandbox.execute("print('lone \\ud800 surrogate')", timeout=20)
    second = await sandbox.execute(
        "from IPython.display import display\ndisplay({'text/plain': '\\udcff'}, raw=True)",
        timeout=20,
    )
    after = await sandbox.execute("print('after')", timeout=20)
    problems = [_notebook_problem(r) for r in (first, second, after)]
    record(
        observed=f"print: {short(first)}; display: {short(second)}; next cell: {short(after)} "
        f"{after.text().strip()!r}; notebook problems: {[p for p in problems if p] or 'none'}"
    )
    assert first.status in ("ok", "error") and second.status in ("ok", "error")
    assert after.ok and after.text().strip() == "after"
    assert problems == [None, None, None]
