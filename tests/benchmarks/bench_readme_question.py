"""The README's first question, asked as a new user would, several times.

    python -m tests.benchmarks.bench_readme_question [--runs 5] [-- EXTRA kernelagent run OPTIONS]

Runs ``kernelagent run "<the README's question>" --data examples/sales.csv --json`` in a
fresh process each time, with the defaults a new user gets (the local model when no API
key is set, its attempts and verification) and agent memory off, so that no run recalls
an earlier run's answer. The expected region is computed from the CSV here; the plot part
of the question counts when the session notebook holds an image. Raw results go to
``results/readme-question.json``, the table to ``results/readme-question.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from tests.benchmarks.report import RESULTS_DIR
from tests.benchmarks.scoring import normalize_string

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "sales.csv"
QUESTION = "Which region has the highest total revenue? Plot revenue by month."


def expected_region(path: Path) -> str:
    totals: dict[str, float] = defaultdict(float)
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            totals[row["region"]] += float(row["revenue"])
    return max(totals, key=totals.__getitem__)


def regions(path: Path) -> set[str]:
    with path.open(newline="") as file:
        return {row["region"] for row in csv.DictReader(file)}


def names_only(answer: str, expected: str, every: set[str]) -> bool:
    """The answer names the expected region and no other one."""
    words = set(normalize_string(answer).replace(",", " ").replace(".", " ").split())
    named = {region for region in every if region.lower() in words}
    return named == {expected}


def has_image(notebook: Path) -> bool:
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return False
    return any(
        "image/png" in output.get("data", {})
        for cell in cells
        for output in cell.get("outputs", [])
    )


def one_run(extra: list[str], timeout: float) -> dict:
    command = ["kernelagent", "run", QUESTION, "--data", str(DATA), "--json", "--quiet"]
    command += ["--no-agent-memory", *extra]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": timeout, "answer": None}
    seconds = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {
            "status": f"exit {done.returncode}",
            "seconds": seconds,
            "answer": None,
            "stderr": done.stderr[-2000:],
        }
    summary = json.loads(lines[-1])
    return {**summary, "seconds": seconds, "exit_code": done.returncode}


def write(results: list[dict], expected: str, command: str) -> Path:
    passed = sum(1 for r in results if r["correct"])
    plotted = sum(1 for r in results if r["plot"])
    lines = [
        "# The README's first question on the default local model",
        "",
        f"Question: “{QUESTION}” with `--data examples/sales.csv`; the expected region, "
        f"computed from the CSV, is **{expected}**. Each run is a fresh `kernelagent run` process "
        "with a new user's defaults (no API key: the local Qwen2.5-Coder-1.5B, its attempts and "
        "verification) and agent memory off, so no run recalls another's answer.",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; written {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| run | answer | correct | plot | status | seconds | tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, r in enumerate(results, 1):
        answer = " ".join(str(r.get("answer") or "—").split())[:80].replace("|", "\\|")
        tokens = (r.get("usage") or {}).get("total_tokens", "")
        lines.append(
            f"| {number} | {answer} | {'yes' if r['correct'] else '**no**'} | "
            f"{'yes' if r['plot'] else 'no'} | {r['status']} | {r['seconds']:.0f} | {tokens} |"
        )
    lines += [
        "",
        f"**{passed} of {len(results)}** runs answered {expected} (and named no other region); "
        f"{plotted} of {len(results)} drew the plot.",
    ]
    path = RESULTS_DIR / "readme-question.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("extra", nargs="*", help="more `kernelagent run` options, after --")
    args = parser.parse_args(argv)
    expected, every = expected_region(DATA), regions(DATA)
    raw_path = RESULTS_DIR / "readme-question.json"
    command = "python -m tests.benchmarks.bench_readme_question " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    results: list[dict] = []
    for number in range(1, args.runs + 1):
        result = one_run(args.extra, args.timeout)
        result["correct"] = names_only(str(result.get("answer") or ""), expected, every)
        notebook = result.get("notebook")
        result["plot"] = bool(notebook) and has_image(Path(notebook))
        results.append(result)
        print(
            f"run {number}: {result['status']} answer={result.get('answer')!r} "
            f"correct={result['correct']} plot={result['plot']} {result['seconds']:.0f}s",
            flush=True,
        )
        raw_path.write_text(json.dumps({"command": command, "results": results}, indent=1))
    print(write(results, expected, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
