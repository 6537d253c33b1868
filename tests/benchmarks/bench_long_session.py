"""A 40-step session within its context budget: can the model still answer a question about
step 3 when the older steps were clipped, and when it summarised them itself?

    python -m tests.benchmarks.bench_long_session --model local          # the 1.5B, served here
    python -m tests.benchmarks.bench_long_session --model scripted       # the harness only
    python -m tests.benchmarks.bench_long_session --base-url URL --model NAME

The 40 steps are a recorded-looking conversation (a cell and its output each; step 3's
output states a checksum after 400 characters of log lines, beyond what clipping keeps),
compacted whenever it passes the budget, as the loop does; then the model is asked the
question in one turn without tools. Repeated ``--trials`` times with a different checksum each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

from kernelagent.agent.compaction import ModelSummaryCompactor, ask_without_tools
from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    Model,
    ModelContextError,
    ToolCall,
)
from kernelagent.agent.models_factory import make_model
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.benchmarks.report import RESULTS_DIR

STEPS = 40
BUDGET = 24_000
QUESTION = (
    "Question about the session so far: what checksum did step 3 print? Reply with the number only."
)


def step_items(conversation: Conversation, step: int, checksum: int) -> None:
    code = f"log = load_log({step})\nprint(log.summary())"
    call = ToolCall(id=f"c{step}", name="python", arguments=json.dumps({"code": code}))
    conversation.append(AssistantItem(text=f"Step {step}: the next log.", tool_calls=[call]))
    noise = "".join(f"line {n}: ok, 0 warnings\n" for n in range(20))
    fact = f"checksum of log {step}: {checksum if step == 3 else checksum + step * 7919}\n"
    conversation.add_tool_result(f"c{step}", noise + fact + noise * 3)


def new_conversation() -> Conversation:
    conversation = Conversation(system="You are a careful data analyst in a Jupyter kernel.")
    conversation.add_user("Load the 40 daily logs one by one and report anything unusual.")
    return conversation


def full_size() -> int:
    conversation = new_conversation()
    for step in range(1, STEPS + 1):
        step_items(conversation, step, 1)
    return conversation.size()


async def trial(model: Model, method: str, checksum: int, budget: int) -> dict[str, object]:
    """The steps arrive one by one and are compacted when they pass the budget, as the loop
    does before each model turn; a question the server finds longer than its context is
    compacted again to what the server said fits, as the loop does (at most twice)."""
    conversation = new_conversation()
    compactor = ModelSummaryCompactor(model, timeout=600)

    async def shrink(to: int) -> None:
        if method == "clip":
            conversation.compact(to)
        else:
            await compactor(conversation, to)

    largest = 0
    for step in range(1, STEPS + 1):
        step_items(conversation, step, checksum)
        if conversation.size() > budget:
            await shrink(budget)
        largest = max(largest, conversation.size())  # what the next model turn would get
    conversation.add_user(QUESTION)
    started = time.monotonic()
    refused, text = 0, ""
    for _ in range(3):
        try:
            text = (await ask_without_tools(model, conversation)).text
            break
        except ModelContextError as error:
            refused += 1
            budget = error.fitting_chars(conversation.size())
            await shrink(budget)
    return {
        "right": bool(text) and str(checksum) in text,
        "within": largest <= budget and refused == 0,
        "chars": largest,
        "summaries": compactor.summaries,
        "refused": refused,
        "seconds": time.monotonic() - started,
        "answer": text.strip()[:40] if text else "(the server refused every request)",
    }


def scripted_responder(body: dict[str, object]) -> ScriptedTurn:
    """Summaries keep every checksum line; answers quote the checksum of log 3 if it is in
    the request (the harness check: clipping loses it, a faithful summary keeps it)."""
    text = json.dumps(body)
    if "running notes" in text:
        lines = [part.split("\\n")[0] for part in text.split("checksum of log ")[1:]]
        summary = "\n".join(f"- checksum of log {line}" for line in lines)
        return ScriptedTurn.say(summary or "- no checksums seen")
    marker = "checksum of log 3: "
    found = text.split(marker, 1)[1].split("\\n", 1)[0] if marker in text else "unknown"
    return ScriptedTurn.say(found)


async def main(args: argparse.Namespace) -> Path:
    server = None
    if args.model == "scripted":
        server = ScriptedModelServer(scripted_responder).start()
        args.base_url = server.base_url
    if args.model == "local":
        from kernelagent.api import build_config, served_model

        config = build_config(model="local", api="chat")
        config.local_model = ""
        context = served_model(config)  # sets limits.context_chars from the served slot
    else:
        from contextlib import nullcontext

        from kernelagent.api import build_config

        config = build_config(model=args.model, api="chat", base_url=args.base_url)
        context = nullcontext(config)  # type: ignore[assignment]
    results: dict[str, list[dict[str, object]]] = {"clip": [], "summary": []}
    async with context:
        budget = min(BUDGET, config.limits.context_chars)
        model = make_model("chat", config.model, base_url=config.base_url, stream=False)
        rng = random.Random(7)
        for _ in range(args.trials):
            checksum = rng.randrange(10_000, 99_999)
            for method in results:
                results[method].append(await trial(model, method, checksum, budget))
        await model.aclose()  # type: ignore[attr-defined]
    if server is not None:
        server.stop()
    lines = [
        "# A 40-step session within its context budget: a question about step 3",
        "",
        f"Command: `python -m tests.benchmarks.bench_long_session --model {args.model} "
        f"--trials {args.trials}`  ",
        f"Budget {budget:,} characters; conversation before compaction "
        f"{full_size():,}; run {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| method | right | within budget | largest conversation | summary turns "
        "| refused by the server | answer s |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, runs in results.items():
        right = sum(bool(r["right"]) for r in runs)
        within = sum(bool(r["within"]) for r in runs)
        chars = max(int(str(r["chars"])) for r in runs)
        seconds = sum(float(str(r["seconds"])) for r in runs) / len(runs)
        turns = sum(int(str(r["summaries"])) for r in runs)
        refused = sum(int(str(r["refused"])) for r in runs)
        lines.append(
            f"| {method} | {right}/{len(runs)} | {within}/{len(runs)} | {chars:,} | {turns} "
            f"| {refused} | {seconds:.1f} |"
        )
    if args.model == "scripted":
        lines += ["", "Scripted model: a harness check (its summary copies the checksum lines)."]
    name = "long-session-scripted.md" if args.model == "scripted" else "long-session.md"
    out = args.out or RESULTS_DIR / name
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scripted", help="scripted, local, or a model name")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    asyncio.run(main(parser.parse_args()))
