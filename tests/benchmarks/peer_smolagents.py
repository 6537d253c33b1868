"""The peer agent: one task through smolagents' ``CodeAgent`` on an OpenAI-compatible server.

    cd WORKDIR && python -m tests.benchmarks.peer_smolagents --base-url URL --model NAME \
        --max-steps 10 --prompt-file task.txt --out result.json

Run it with the task's data files in the working directory (``run_tasks`` makes a fresh
copy per task). smolagents executes the model's code in this process with its
``LocalPythonExecutor``; pandas, numpy, matplotlib and scipy may be imported. It writes a
JSON summary: answer, state, steps, tokens, seconds and a trace of every step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

AUTHORIZED_IMPORTS = [
    "pandas",
    "pandas.*",
    "numpy",
    "numpy.*",
    "matplotlib",
    "matplotlib.*",
    "scipy",
    "scipy.*",
    "datetime",
    "statistics",
    "math",
    "collections",
    "os",
    "os.path",
    "csv",
    "json",
]
"""The brief's pandas/numpy/matplotlib, scipy (kernelagent's prompt names it) and the standard
modules a data task may reach for: kernelagent's kernel restricts no import."""


def answer_text(output: Any) -> str | None:
    """smolagents returns whatever the model passed to final_answer; score its text."""
    if output is None:
        return None
    if isinstance(output, (list, tuple, set)):
        return ", ".join(str(item) for item in output)
    if hasattr(output, "item") and callable(output.item):
        try:
            return str(output.item())
        except (TypeError, ValueError):
            pass
    return str(output)


def _cut(text: Any, limit: int = 1500) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]


def run_peer(
    prompt: str, *, base_url: str, model: str, max_steps: int, api_key: str = "x"
) -> dict[str, Any]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from smolagents import CodeAgent, OpenAIServerModel
    from smolagents.memory import ActionStep

    # llama.cpp's server accepts only string contents: smolagents' documented switch for that
    server_model = OpenAIServerModel(
        model_id=model, api_base=base_url, api_key=api_key, flatten_messages_as_text=True
    )
    agent = CodeAgent(
        tools=[],
        model=server_model,
        additional_authorized_imports=AUTHORIZED_IMPORTS,
        max_steps=max_steps,
        verbosity_level=0,
    )
    started = time.perf_counter()
    error = None
    output = None
    state = "error"
    try:
        result = agent.run(prompt, return_full_result=True)
        output, state = result.output, result.state
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    steps = [step for step in agent.memory.steps if isinstance(step, ActionStep)]
    input_tokens = sum(step.token_usage.input_tokens for step in steps if step.token_usage)
    output_tokens = sum(step.token_usage.output_tokens for step in steps if step.token_usage)
    trace = [
        {
            "step": step.step_number,
            "model_output": _cut(step.model_output, 3000),
            "code": step.code_action,
            "observations": _cut(step.observations),
            "error": _cut(str(step.error)) if step.error else None,
            "is_final_answer": step.is_final_answer,
        }
        for step in steps
    ]
    return {
        "answer": answer_text(output),
        "state": state,
        "error": error,
        "steps": len(steps),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "seconds": seconds,
        "trace": trace,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--prompt-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "x"))
    args = parser.parse_args(argv)
    summary = run_peer(
        args.prompt_file.read_text(),
        base_url=args.base_url,
        model=args.model,
        max_steps=args.max_steps,
        api_key=args.api_key,
    )
    args.out.write_text(json.dumps(summary, indent=1, default=str))
    print(
        json.dumps(
            {key: summary[key] for key in ("answer", "state", "steps", "seconds")}, default=str
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
