"""Memory across sessions: does session 2 succeed (and with how many tokens) when it can
recall what session 1 learned, against the same two sessions with memory off?

    python -m tests.benchmarks.bench_memory --model local            # the 1.5B, served here
    python -m tests.benchmarks.bench_memory --model scripted         # checks the harness only
    python -m tests.benchmarks.bench_memory --base-url URL --model NAME --api chat

Each scenario is a dataset with a quirk (a unit, a sentinel value, a date or number format,
a header offset, duplicates, a code) or an expensive result. Session 1's task states the
quirk (or computes the result); session 2's task needs it and does not say it. Every
session is a separate `kernelagent run` process; "on" runs both sessions in one fresh
memory home, "off" runs both with --no-agent-memory. The scripted model answers every
session correctly from the data (it does not read the prompt), so its table shows only
that the harness runs and what memory adds to the prompt; success needs a real model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.benchmarks.report import RESULTS_DIR
from tests.benchmarks.scoring import score


@dataclass
class Scenario:
    id: str
    file: str
    rows: Callable[[], str]
    """The CSV text (deterministic)."""
    first: str
    second: str
    expected: Callable[[Path], float]
    """Session 2's answer, computed from the file."""
    tolerance: float = 0.01


def _orders() -> str:
    return "order_id,amount\n" + "".join(f"{n},{(n * 737) % 9000 + 100}\n" for n in range(1, 201))


def _sensors() -> str:
    values = [(-999 if n % 7 == 0 else 15 + (n * 13) % 11) for n in range(1, 151)]
    return "reading,temp_c\n" + "".join(f"{n},{v}\n" for n, v in enumerate(values, 1))


def _visits() -> str:
    rows = [f"{(n % 28) + 1:02d}/{(n * 5) % 12 + 1:02d}/2024,{n}" for n in range(300)]
    return "date,visitor\n" + "\n".join(rows) + "\n"


def _prices() -> str:
    rows = [f"item{n};{(n * 37) % 500 + 1},{n % 100:02d}" for n in range(120)]
    return "item;price\n" + "\n".join(rows) + "\n"


def _events() -> str:
    rows = [f"e{n % 90},{(n % 90) * 3 + 1}" for n in range(150)]  # e0..e59 appear twice
    return "event_id,value\n" + "\n".join(rows) + "\n"


def _trips() -> str:
    return "trip,distance\n" + "".join(f"{n},{(n * 7) % 40 + 2}\n" for n in range(1, 101))


def _inventory() -> str:
    body = "".join(f"sku{n},{(n * 11) % 70}\n" for n in range(80))
    return "# exported 2024-03-01\n# warehouse 4\nsku,stock\n" + body


def _customers() -> str:
    return "customer,status\n" + "".join(f"c{n},{1 if n % 4 else 2}\n" for n in range(200))


def _purchases() -> str:
    rows = [f"c{(n * 7) % 50},{(n * 31) % 400 + 5}" for n in range(2000)]
    return "customer,spend\n" + "\n".join(rows) + "\n"


def _frame(path: Path, **read: Any) -> Any:
    import pandas as pd

    return pd.read_csv(path, **read)


SCENARIOS = [
    Scenario(
        "unit-cents",
        "orders.csv",
        _orders,
        "In orders.csv the amount column is in cents. What is the total amount in dollars?",
        "What is the average order amount in orders.csv, in dollars?",
        lambda p: float(_frame(p)["amount"].mean() / 100),
    ),
    Scenario(
        "sentinel-999",
        "sensors.csv",
        _sensors,
        "In sensors.csv a temp_c of -999 marks a missing reading. How many readings are missing?",
        "What is the mean temperature (temp_c) in sensors.csv?",
        lambda p: float(_frame(p).query("temp_c != -999")["temp_c"].mean()),
    ),
    Scenario(
        "day-first-dates",
        "visits.csv",
        _visits,
        "The dates in visits.csv are day/month/year. How many visits were in March 2024?",
        "In visits.csv, which month of 2024 (1-12) had the most visits?",
        lambda p: float(
            _frame(p, parse_dates=["date"], dayfirst=True)["date"].dt.month.value_counts().idxmax()
        ),
    ),
    Scenario(
        "semicolon-decimal-comma",
        "prices.csv",
        _prices,
        "prices.csv uses ';' between fields and ',' as decimal mark. What is the highest price?",
        "What is the mean price in prices.csv?",
        lambda p: float(_frame(p, sep=";", decimal=",")["price"].mean()),
    ),
    Scenario(
        "duplicate-rows",
        "events.csv",
        _events,
        "events.csv has duplicated rows that must be dropped. How many distinct events are there?",
        "What is the total value of the events in events.csv?",
        lambda p: float(_frame(p).drop_duplicates()["value"].sum()),
    ),
    Scenario(
        "unit-miles",
        "trips.csv",
        _trips,
        "The distance column of trips.csv is in miles. What is the total distance in km?",
        "What is the average trip distance in trips.csv, in km?",
        lambda p: float(_frame(p)["distance"].mean() * 1.609344),
        tolerance=0.02,
    ),
    Scenario(
        "header-offset",
        "inventory.csv",
        _inventory,
        "inventory.csv starts with 2 comment lines before its header. How many SKUs are listed?",
        "What is the total stock in inventory.csv?",
        lambda p: float(_frame(p, skiprows=2)["stock"].sum()),
    ),
    Scenario(
        "status-code",
        "customers.csv",
        _customers,
        "In customers.csv status 2 means churned and 1 active. How many customers churned?",
        "What percentage of the customers in customers.csv churned?",
        lambda p: float((_frame(p)["status"] == 2).mean() * 100),
    ),
    Scenario(
        "expensive-result",
        "purchases.csv",
        _purchases,
        "What is the median of the per-customer total spend in purchases.csv?",
        "What was the median per-customer total spend in purchases.csv? Reply with the number.",
        lambda p: float(_frame(p).groupby("customer")["spend"].sum().median()),
    ),
]


def scripted_responder(data: dict[str, Path]) -> Callable[[dict[str, Any]], ScriptedTurn]:
    """Prints the expected answer of the scenario the request is about, then answers it."""

    def respond(body: dict[str, Any]) -> ScriptedTurn:
        text = json.dumps(body)
        scenario = next(s for s in SCENARIOS if s.second in text or s.first in text)
        value = scenario.expected(data[scenario.id])
        if "what you learned" in text:
            return ScriptedTurn.say("NOTHING")
        if '"function_call_output"' not in text and '"role": "tool"' not in text:
            return ScriptedTurn.python(f"print({value!r})")
        return ScriptedTurn.final(f"{value}")

    return respond


def run_session(
    task: str, data: Path, home: Path, args: argparse.Namespace, memory: bool
) -> dict[str, Any]:
    command = [sys.executable, "-m", "kernelagent.cli", "run", task, "--data", str(data)]
    command += ["--model", args.model, "--max-steps", str(args.max_steps), "--json", "--quiet"]
    if args.base_url:
        command += ["--base-url", args.base_url, "--api", args.api]
    if args.attempts is not None:
        command += ["--attempts", str(args.attempts)]
    if not memory:
        command.append("--no-agent-memory")
    env = {**os.environ, "KERNELAGENT_HOME": str(home), "KERNELAGENT_POOL": "0"}
    env.pop("KERNELAGENT_STORE_URL", None)  # memory is in the store: each scenario its own
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": time.monotonic() - started}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {"status": f"exit {done.returncode}"}
    summary["seconds"] = time.monotonic() - started
    return summary


def run_pair(
    scenario: Scenario, data: Path, scratch: Path, args: argparse.Namespace, memory: bool
) -> dict[str, Any]:
    home = scratch / f"{scenario.id}-{'on' if memory else 'off'}"
    run_session(scenario.first, data, home, args, memory)
    second = run_session(scenario.second, data, home, args, memory)
    expected = scenario.expected(data)
    verdict = score(second.get("answer"), "number", expected, rel_tol=scenario.tolerance)
    usage = second.get("usage") or {}
    return {
        "passed": verdict.passed,
        "answer": second.get("answer"),
        "expected": expected,
        "status": second.get("status"),
        "tokens": int(usage.get("total_tokens") or 0),
        "input_tokens": int(usage.get("input_tokens") or 0),
        "seconds": second["seconds"],
    }


def render(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    on_ok = sum(r["on"]["passed"] for r in results.values())
    off_ok = sum(r["off"]["passed"] for r in results.values())
    lines = [
        "# Memory across sessions: session 2 with and without session 1's memories",
        "",
        f"Command: `python -m tests.benchmarks.bench_memory {' '.join(args.argv)}`  ",
        f"Model `{args.model}`; run {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{len(results)} scenarios, each two `kernelagent run` processes per mode.",
        "",
        "| scenario | memory on | tokens on | memory off | tokens off | expected |",
        "|---|---|---|---|---|---|",
    ]
    for name, pair in results.items():
        on, off = pair["on"], pair["off"]
        lines.append(
            f"| {name} | {_cell(on)} | {on['tokens']} | {_cell(off)} | {off['tokens']} "
            f"| {on['expected']:.4g} |"
        )
    lines += ["", f"Session 2 right: {on_ok}/{len(results)} with memory, {off_ok} without."]
    if args.model == "scripted":
        lines.append(
            "The scripted model is right either way: this run checks the harness; the token "
            "difference is what recalled memories add to session 2's prompt."
        )
    return "\n".join(lines) + "\n"


def _cell(result: dict[str, Any]) -> str:
    mark = "pass" if result["passed"] else "fail"
    answer = re.sub(r"\s+", " ", str(result["answer"]))[:30]
    return (
        f"{mark} ({answer})" if result["passed"] else f"**{mark}** ({result['status']}: {answer})"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scripted", help="scripted, local, or a model name")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--api", default="chat")
    parser.add_argument("--scenarios", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument(
        "--attempts", type=int, default=None, help="kernelagent --attempts (default: its own)"
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    chosen = [s for s in SCENARIOS if not args.scenarios or s.id in args.scenarios.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    data = {}
    for scenario in chosen:
        path = scratch / "data" / scenario.id / scenario.file
        path.parent.mkdir(parents=True)
        path.write_text(scenario.rows())
        data[scenario.id] = path
    server = None
    if args.model == "scripted":
        server = ScriptedModelServer(scripted_responder(data)).start()
        args.base_url, args.api = server.base_url, "responses"
    results: dict[str, dict[str, dict[str, Any]]] = {}
    print(f"scratch: {scratch}", flush=True)
    try:
        for s in chosen:
            results[s.id] = {}
            for mode in ("on", "off"):
                pair = run_pair(s, data[s.id], scratch, args, memory=mode == "on")
                results[s.id][mode] = pair
                print(f"{s.id} memory {mode}: {_cell(pair)} {pair['seconds']:.0f}s", flush=True)
                (scratch / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        if server is not None:
            server.stop()
    name = "memory-scripted.md" if args.model == "scripted" else "memory.md"
    out = args.out or RESULTS_DIR / name
    out.write_text(render(results, args))
    print(out.read_text())
    return out


if __name__ == "__main__":
    main()
