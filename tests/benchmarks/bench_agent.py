"""Per-step runtime overhead of the agent loop, excluding model latency.

    python -m tests.benchmarks.bench_agent [--steps 100] [--sandbox docker]

A scripted model asks for a trivial cell at every step. Time spent inside the model
adapter (HTTP to the scripted server) is subtracted; what remains per step is the
loop + events + recorder + execution. The baseline is ``Sandbox.execute`` of the same
trivial cell on the same kernel, in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from kernelagent.agent.model import Conversation, Model, ModelTurn, ToolSpec
from kernelagent.agent.models_factory import make_model
from kernelagent.api import build_config
from kernelagent.session.session import Session
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.benchmarks.report import Row, ms, p50, write_table


class TimedModel:
    """Wraps a model and adds up the time spent in its turns."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = inner.name
        self.supports_images = inner.supports_images
        self.seconds = 0.0

    async def turn(
        self,
        conversation: Conversation,
        tools: list[ToolSpec],
        on_text_delta=None,
        *,
        temperature=None,
    ) -> ModelTurn:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return await self.inner.turn(conversation, tools, on_text_delta)
        finally:
            self.seconds += time.perf_counter() - start

    async def aclose(self) -> None:
        await self.inner.aclose()  # type: ignore[attr-defined]


async def main(steps: int, sandbox_kind: str) -> Path:
    script = [ScriptedTurn.python("x = 1") for _ in range(steps)] + [ScriptedTurn.final("done")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    with ScriptedModelServer(script) as server:
        config = build_config(
            model="scripted", base_url=server.base_url, sandbox=sandbox_kind, max_steps=steps + 5
        )
        model = TimedModel(make_model("responses", "scripted", base_url=server.base_url))
        session = await Session.start(
            config, model, workspace=tmp / "ws", notebook=tmp / "bench.ipynb"
        )
        start = time.perf_counter()
        outcome = await session.run("benchmark")
        total = time.perf_counter() - start
        await model.aclose()
    assert outcome.status == "completed", outcome.reason
    raw: list[float] = []
    for _ in range(steps):
        begin = time.perf_counter()
        await session.sandbox.execute("x = 1")
        raw.append(time.perf_counter() - begin)
    await session.close()
    per_step = (total - model.seconds) / steps
    raw_p50 = p50(raw)
    rows = [
        Row(
            "agent step, model latency excluded (mean)",
            ms(per_step),
            ms(raw_p50) + " (Sandbox.execute, p50)",
            f"{per_step / raw_p50:.2f}",
            "",
            None,
        ),
        Row("agent overhead per step beyond the cell", ms(per_step - raw_p50), "", "", "", None),
        Row(
            "time inside the model adapter per step (scripted)",
            ms(model.seconds / (steps + 1)),
            "",
            "",
            "",
            None,
        ),
    ]
    return write_table(
        "agent",
        "Agent loop overhead",
        f"python -m tests.benchmarks.bench_agent --steps {steps} --sandbox {sandbox_kind}",
        rows,
        notes=(
            f"{steps} steps of a trivial cell with a scripted model over HTTP on 127.0.0.1; "
            f"session run {total:.2f} s, of which {model.seconds:.2f} s inside model calls. "
            "Per step the loop emits ~6 events, saves the notebook atomically with fsync at the "
            "cell's "
            "start and finish, and builds the model's feedback."
        ),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sandbox", default="docker")
    args = parser.parse_args()
    print(asyncio.run(main(args.steps, args.sandbox)).read_text())
