"""The shared model service: parallel decoding, memory, time to first token.

    python -m tests.benchmarks.bench_model_service [--model NAME] [--tokens 96]

On one llama-server of the service (4 slots, continuous batching):

* aggregate decode tokens/s with 1, 2 and 4 concurrent sessions vs one session
  (goal >= 1.8x at 4 on 2 cores);
* resident memory of the service (one model load) vs N separate one-slot servers
  (RSS counts the mmap'd weights in every process; PSS shares them out);
* time to first token of a second session while a first decodes, vs an idle server
  and vs a one-slot server (where it waits for the first to finish).

Uses the 1.5B model if it is pulled, else the 0.5B. Each request is a streamed chat
completion that decodes exactly ``--tokens`` tokens (``ignore_eos``); the second
session's prompt is kernelagent's real system prompt. Runs in a models directory of its
own (links to the real model and binary) so it never shares a server with other work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import openai

from kernelagent.agent.prompts import system_prompt
from kernelagent.localmodel import start_local_model
from kernelagent.localmodel.backends import (
    BackendChoice,
    ServeOptions,
    installed_llama_server,
    server_command,
    server_ready,
)
from kernelagent.localmodel.server import free_port
from kernelagent.localmodel.service import stop
from kernelagent.localmodel.service_files import process_rss
from kernelagent.localmodel.store import ModelStore, models_dir
from tests.benchmarks.report import Row, write_table

DECODE_PROMPT = "Write a long, well commented Python module about {topic}."
TOPICS = ("sorting", "parsing dates", "matrix algebra", "graph search", "caching", "retries")
CTX = 4096


@dataclass
class Request:
    started: float
    first_token: float | None = None
    finished: float | None = None
    tokens: int = 0


async def stream_once(
    client: openai.AsyncOpenAI,
    model: str,
    messages: list[dict[str, str]],
    tokens: int,
    first: asyncio.Event | None = None,
) -> Request:
    """One streamed chat completion that decodes exactly ``tokens`` tokens."""
    request = Request(started=time.perf_counter())
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        max_tokens=tokens,
        temperature=0,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and request.first_token is None:
            request.first_token = time.perf_counter()
            if first is not None:
                first.set()
        if chunk.usage is not None:
            request.tokens = chunk.usage.completion_tokens
    request.finished = time.perf_counter()
    return request


def decode_messages(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": DECODE_PROMPT.format(topic=TOPICS[index % len(TOPICS)])}]


async def aggregate_decode(
    client: openai.AsyncOpenAI, model: str, sessions: int, tokens: int
) -> float:
    """Tokens/s over all sessions, from the first first token to the last token."""
    requests = await asyncio.gather(
        *(stream_once(client, model, decode_messages(n), tokens) for n in range(sessions))
    )
    start = min(r.first_token for r in requests if r.first_token is not None)
    end = max(r.finished for r in requests if r.finished is not None)
    return sum(r.tokens - 1 for r in requests) / (end - start)


def agent_messages() -> list[dict[str, str]]:
    """A new session's first request: kernelagent's system prompt and a task. A unique
    first line keeps the server's prompt cache out of the comparison."""
    system = f"Session {uuid.uuid4().hex}.\n" + system_prompt(
        "/workspace", ["sales.csv"], code_blocks=True
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "Which region has the highest total revenue?"},
    ]


async def ttft_while_busy(
    client: openai.AsyncOpenAI, model: str, tokens: int
) -> tuple[float, float]:
    """(second session's time to first token while a first decodes, the first's total)."""
    agent = agent_messages()
    first_token = asyncio.Event()
    first = asyncio.create_task(
        stream_once(client, model, decode_messages(0), tokens * 2, first_token)
    )
    await first_token.wait()
    await asyncio.sleep(1.0)  # the first is decoding now
    second = await stream_once(client, model, agent, 8)
    done = await first
    assert second.first_token is not None and done.finished is not None
    return second.first_token - second.started, done.finished - done.started


async def ttft_idle(client: openai.AsyncOpenAI, model: str) -> float:
    request = await stream_once(client, model, agent_messages(), 8)
    assert request.first_token is not None
    return request.first_token - request.started


def pss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class SeparateServers:
    """N llama-servers of one slot each, as N sessions that each start their own."""

    def __init__(self, model_path: Path, alias: str, count: int, slots: int = 1) -> None:
        binary = installed_llama_server()
        assert binary is not None, "llama-server is not installed: kernelagent model install-server"
        choice = BackendChoice("llama-server", binary)
        options = ServeOptions(parallel_slots=slots, ctx_per_slot=CTX)
        self.ports = [free_port() for _ in range(count)]
        self.processes = [
            subprocess.Popen(
                server_command(choice, model_path, alias, port, options),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in self.ports
        ]

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for port, process in zip(self.ports, self.processes, strict=False):
            while not server_ready("llama-server", "127.0.0.1", port):
                assert process.poll() is None and time.monotonic() < deadline, (
                    "a server did not start"
                )
                time.sleep(0.25)

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/v1" for port in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)


def private_models_dir(name: str) -> Path:
    """A models directory of the benchmark's own, linking the real model (and its record)."""
    real = ModelStore(models_dir())
    resolved = real.resolve(name)
    if not resolved.exists:
        sys.exit(f"{name} is not pulled: kernelagent model pull {name}")
    root = Path(tempfile.mkdtemp(prefix="bench-model-service-"))
    for suffix in ("", ".verified.json"):
        source = resolved.path.with_name(resolved.path.name + suffix)
        if source.exists():
            (root / source.name).symlink_to(source)
    return root


def mib(size: int | None) -> str:
    return f"{size / 2**20:.0f} MiB" if size else "?"


async def main(args: argparse.Namespace) -> None:
    name = args.model or (
        "qwen2.5-coder-1.5b"
        if ModelStore().is_pulled("qwen2.5-coder-1.5b")
        else "qwen2.5-coder-0.5b"
    )
    binary = installed_llama_server()
    if binary is None:
        sys.exit("llama-server is not installed: kernelagent model install-server")
    root = private_models_dir(name)
    os.environ["KERNELAGENT_MODELS_DIR"] = str(root)
    os.environ["KERNELAGENT_LLAMA_SERVER"] = str(binary)
    started = time.perf_counter()
    rows: list[Row] = []
    handle = await start_local_model(
        name,
        store=ModelStore(root),
        slots=4,
        n_ctx=CTX,
        idle_timeout=0,
        label="benchmark",
        backend="llama-server",
    )
    client = openai.AsyncOpenAI(
        base_url=handle.base_url, api_key="local", max_retries=0, timeout=600
    )
    try:
        await stream_once(client, handle.model_name, decode_messages(5), 8)  # warm up
        rates = {
            n: await aggregate_decode(client, handle.model_name, n, args.tokens) for n in (1, 2, 4)
        }
        for n in (2, 4):
            goal = n == 4
            rows.append(
                Row(
                    f"aggregate decode, {n} concurrent sessions, one server",
                    f"{rates[n]:.1f} tok/s",
                    f"{rates[1]:.1f} tok/s (one session)",
                    f"{rates[n] / rates[1]:.2f}x",
                    "≥ 1.8x" if goal else "",
                    rates[n] / rates[1] >= 1.8 if goal else None,
                )
            )
        idle = await ttft_idle(client, handle.model_name)
        busy, first_total = await ttft_while_busy(client, handle.model_name, args.tokens)
        service_rss, service_pss = process_rss(handle.state.pid), pss(handle.state.pid or 0)
    finally:
        await client.close()
        handle.close()
        stop(root=root)

    one_slot = SeparateServers(Path(handle.model_path), handle.model_name, 1)
    one_slot.wait_ready()
    single = openai.AsyncOpenAI(
        base_url=one_slot.urls()[0], api_key="local", max_retries=0, timeout=600
    )
    try:
        await stream_once(single, handle.model_name, decode_messages(5), 8)
        queued, _ = await ttft_while_busy(single, handle.model_name, args.tokens)
    finally:
        await single.close()
        one_slot.stop()
    rows.append(
        Row(
            "time to first token, 2nd session while a 1st decodes (4 slots)",
            f"{busy:.1f} s",
            f"{idle:.1f} s on an idle server; {queued:.1f} s on a 1-slot server (queued)",
            f"{busy / idle:.2f}x idle",
            f"< {first_total:.0f} s (the 1st's run)",
            busy < queued,
        )
    )

    separate = SeparateServers(Path(handle.model_path), handle.model_name, 4)
    separate.wait_ready()
    try:
        for url in separate.urls():  # touch each one's buffers as a session would
            async with openai.AsyncOpenAI(base_url=url, api_key="local", max_retries=0) as each:
                await stream_once(each, handle.model_name, decode_messages(1), 8)
        rss = [process_rss(p.pid) or 0 for p in separate.processes]
        pss_each = [pss(p.pid) or 0 for p in separate.processes]
    finally:
        separate.stop()
    for n in (2, 4):
        rows.append(
            Row(
                f"resident memory, {n} sessions",
                f"{mib(service_rss)} RSS, {mib(service_pss)} PSS (one server, 4 slots)",
                f"{mib(sum(rss[:n]))} RSS, {mib(sum(pss_each[:n]))} PSS ({n} one-slot servers)",
                f"{sum(rss[:n]) / (service_rss or 1):.2f}x less RSS",
                "one model load at any N",
                bool(service_rss) and (service_rss or 0) < sum(rss[:n]),
            )
        )
    command = (
        "python -m tests.benchmarks.bench_model_service"
        + (f" --model {args.model}" if args.model else "")
        + (f" --tokens {args.tokens}" if args.tokens != 96 else "")
    )
    notes = (
        f"Model {name} ({handle.backend}, {handle.state.parallel_slots} slots of {CTX} tokens), "
        f"{os.cpu_count()} cores; each request decodes {args.tokens} tokens (ignore_eos), "
        f"temperature 0. "
        "Aggregate decode = all sessions' tokens / (first first token .. last token). "
        "The second session's prompt is kernelagent's system prompt + a task, made unique so "
        "that no prompt cache helps (prompt processing dominates its first token). Memory after "
        "one short request per server; the mmap'd weights are counted by RSS in every process "
        "and shared out by PSS, so PSS shows what each extra server really adds: its KV cache "
        "and buffers (the service holds 4 slots' KV whatever N is). "
        "The machine was shared with another benchmark (a task run on a llama-server), so the "
        f"numbers are a lower bound; this run took {(time.perf_counter() - started) / 60:.1f} "
        f"minutes."
    )
    path = write_table("model_service", "Shared model service", command, rows, notes)
    print(path.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", help="catalog name (default: the 1.5B if pulled, else the 0.5B)")
    parser.add_argument("--tokens", type=int, default=96, help="tokens each request decodes")
    asyncio.run(main(parser.parse_args()))
