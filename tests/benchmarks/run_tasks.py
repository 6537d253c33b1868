"""Task-success benchmark: kernelagent (and smolagents as a peer) on data-analysis questions.

    python -m tests.benchmarks.run_tasks --model qwen2.5-coder-1.5b [--representative | --tasks a,b
    | --limit N]
    python -m tests.benchmarks.run_tasks --base-url URL --model NAME --api chat
        [--agents kernelagent smolagents] [--max-steps 10] [--append]

Without ``--base-url`` the local model is served with ``kernelagent.localmodel.start_local_model``.
Both agents talk to that one server through a recording proxy on 127.0.0.1, which counts
model calls and tokens from the server's own ``usage`` fields (uniform for both agents),
sends every request with the same sampling settings (``--temperature``, default 0, and an
output cap when the agent sets none), and turns streamed chat requests into plain ones
because llama.cpp reports usage only without streaming (the agent still gets an SSE stream).

Every task runs in a fresh directory with a fresh copy of the generated data:
kernelagent through ``kernelagent run --json`` in the Docker sandbox (its notebook is
kept under ``results/task-notebooks/``), smolagents through ``peer_smolagents`` with the
data in its working directory. Answers are scored by ``scoring.py``; the table goes to
``results/tasks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.scoring import normalize_string, score_task
from tests.benchmarks.tasks.datasets import generate
from tests.benchmarks.tasks.suite import SPLITS, TASKS, Task, select, split_of

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
NOTEBOOKS = RESULTS / "task-notebooks"
AGENTS = ("kernelagent", "smolagents")


# --- the recording proxy ---------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RecordingProxy:
    """An OpenAI-compatible pass-through that counts calls and tokens per ``tag``."""

    def __init__(
        self,
        upstream: str,
        *,
        temperature: float | None,
        max_tokens: int | None,
        api_key: str | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.api_key = api_key
        self.tag = ""
        self.tallies: dict[str, Tally] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(1800.0, connect=10.0))
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="bench-proxy"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._client.close()

    def tally(self, tag: str) -> Tally:
        with self._lock:
            return self.tallies.setdefault(tag, Tally())

    def record(self, usage: dict[str, Any] | None, ok: bool) -> None:
        with self._lock:
            tally = self.tallies.setdefault(self.tag, Tally())
            tally.requests += 1
            tally.errors += not ok
            if usage:
                tally.input_tokens += int(
                    usage.get("prompt_tokens") or usage.get("input_tokens") or 0
                )
                tally.output_tokens += int(
                    usage.get("completion_tokens") or usage.get("output_tokens") or 0
                )

    def adjust(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        if self.temperature is not None and body.get("temperature") is None:
            # the same default for both agents; a temperature an agent chooses (kernelagent's
            # parallel attempts and retries after a refused repeat) is its own and passes
            body["temperature"] = self.temperature
            body.pop("top_p", None)
        if self.max_tokens and not (body.get("max_tokens") or body.get("max_completion_tokens")):
            body["max_tokens"] = self.max_tokens
        return body


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: RecordingProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # the agent may stop waiting (kernelagent stops an attempt a vote no longer needs)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def _headers_out(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.proxy.api_key:
            headers["Authorization"] = f"Bearer {self.proxy.api_key}"
        elif self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        return headers

    def _url(self) -> str:
        return self.proxy.upstream + self.path.removeprefix("/v1")

    def do_GET(self) -> None:
        response = self.proxy._client.get(self._url(), headers=self._headers_out())
        self._send(
            response.status_code,
            response.content,
            response.headers.get("content-type", "application/json"),
        )

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        is_chat = self.path.rstrip("/").endswith("/chat/completions") and isinstance(body, dict)
        if not is_chat:  # anything else (e.g. the Responses API) passes through, uncounted
            self._passthrough(raw)
            return
        stream = bool(body.get("stream"))
        body = self.proxy.adjust(body)
        body.pop("stream", None)
        body.pop("stream_options", None)
        try:
            response = self.proxy._client.post(self._url(), headers=self._headers_out(), json=body)
        except httpx.HTTPError as error:
            self.proxy.record(None, ok=False)
            self._send(
                HTTPStatus.BAD_GATEWAY, json.dumps({"error": {"message": str(error)}}).encode()
            )
            return
        ok = response.status_code == 200
        payload = response.json() if ok else None
        self.proxy.record(payload.get("usage") if payload else None, ok)
        if not ok or not stream:
            self._send(
                response.status_code,
                response.content,
                response.headers.get("content-type", "application/json"),
            )
            return
        self._send_as_stream(payload)

    def _passthrough(self, raw: bytes) -> None:
        with self.proxy._client.stream(
            "POST", self._url(), headers=self._headers_out(), content=raw
        ) as response:
            self.send_response(response.status_code)
            self.send_header(
                "Content-Type", response.headers.get("content-type", "application/json")
            )
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for data in response.iter_bytes():
                if data:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_as_stream(self, completion: dict[str, Any]) -> None:
        """A whole completion as chat-completion chunks, the usage in the last one."""
        base = {key: completion.get(key) for key in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        chunks = []
        for choice in completion.get("choices", []):
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {
                        "index": i,
                        "id": call.get("id"),
                        "type": "function",
                        "function": call.get("function"),
                    }
                    for i, call in enumerate(message["tool_calls"])
                ]
            chunks.append(
                {
                    **base,
                    "choices": [
                        {"index": choice.get("index", 0), "delta": delta, "finish_reason": None}
                    ],
                }
            )
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": choice.get("index", 0),
                            "delta": {},
                            "finish_reason": choice.get("finish_reason") or "stop",
                        }
                    ],
                }
            )
        chunks.append({**base, "choices": [], "usage": completion.get("usage")})
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for message in [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + [
            "data: [DONE]\n\n"
        ]:
            data = message.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --- one run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    task: str
    category: str
    agent: str
    answer: str | None
    expected: Any
    passed: bool
    reason: str
    status: str
    steps: int
    seconds: float
    input_tokens: int
    output_tokens: int
    notebook: str | None = None
    agent_reported: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


async def _run_process(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float, log: Path
) -> tuple[int | None, str]:
    """Run a command in its own process group; on timeout SIGINT it (kernelagent saves and
    stops its sandbox on Ctrl-C), then SIGKILL. Returns (exit code or None, stdout)."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
            return process.returncode, stdout.decode(errors="replace")
        except asyncio.TimeoutError:
            os.killpg(process.pid, signal.SIGINT)
            try:
                stdout, _ = await asyncio.wait_for(process.communicate(), 30)
            except asyncio.TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                stdout, _ = await process.communicate()
            return None, stdout.decode(errors="replace")


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


class Runner:
    def __init__(
        self,
        args: argparse.Namespace,
        scratch: Path,
        data_dir: Path,
        proxy: RecordingProxy,
        model: str,
        api: str,
        decoding_slots: int | None = None,
    ) -> None:
        self.args = args
        self.decoding_slots = decoding_slots
        """Slots of the llama-server the model runs on: kernelagent pins each attempt to one."""
        self.scratch = scratch
        self.data_dir = data_dir
        self.proxy = proxy
        self.model = model
        self.api = api
        self.check_answers = args.check_answers == "on" or (
            args.check_answers == "auto" and not args.base_url
        )
        """What `kernelagent run` does for a model it serves itself, unless told otherwise."""
        self.env = {
            **os.environ,
            "KERNELAGENT_HOME": str(scratch / "kernelagent-home"),
            "MPLBACKEND": "Agg",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("OPENAI_BASE_URL", None)

    async def run(self, agent: str, task: Task) -> RunResult:
        tag = f"{agent}:{task.id}"
        self.proxy.tag = tag
        started = time.perf_counter()
        if agent == "kernelagent":
            answer, status, workdir, notebook, reported = await self._kernelagent(task)
        else:
            answer, status, workdir, notebook, reported = await self._smolagents(task)
        seconds = time.perf_counter() - started
        self.proxy.tag = ""
        tally = self.proxy.tally(tag)
        expected = task.expected(self.data_dir)
        scored = score_task(task, answer, expected, workdir)
        return RunResult(
            task=task.id,
            category=task.category,
            agent=agent,
            answer=answer,
            expected=expected,
            passed=scored.passed,
            reason=scored.reason,
            status=status,
            steps=tally.requests - tally.errors,
            seconds=round(seconds, 1),
            input_tokens=tally.input_tokens,
            output_tokens=tally.output_tokens,
            notebook=notebook,
            agent_reported=reported,
        )

    async def _kernelagent(
        self, task: Task
    ) -> tuple[str | None, str, Path, str | None, dict[str, Any]]:
        run_dir = self.scratch / "kernelagent" / task.id
        run_dir.mkdir(parents=True)
        workspace = run_dir / "workspace"
        notebook = run_dir / f"{task.id}.ipynb"
        command = [
            sys.executable,
            "-m",
            "kernelagent.cli",
            "run",
            task.prompt(),
            *[arg for name in task.files for arg in ("--data", str(self.data_dir / name))],
            "--workspace",
            str(workspace),
            "--notebook",
            str(notebook),
            "--base-url",
            self.proxy.base_url,
            "--model",
            self.model,
            "--api",
            self.api,
            "--max-steps",
            str(self.args.max_steps),
            "--json",
            "--quiet",
            "--no-agent-memory",  # one session per task: no answers recalled from other tasks
            "--check-answers" if self.check_answers else "--no-check-answers",
            "--attempts",
            str(self.args.attempts),
            *(["--decoding-slots", str(self.decoding_slots)] if self.decoding_slots else []),
        ]
        code, stdout = await _run_process(
            command,
            cwd=run_dir,
            env=self.env,
            timeout=self.args.timeout,
            log=run_dir / "stderr.log",
        )
        summary = _last_json(stdout) or {}
        if code is None:
            status = "timeout"
        else:
            status = summary.get("status") or f"exit {code}"
            if status == "paused":
                status = "step limit"
        return (
            summary.get("answer"),
            status,
            workspace,
            str(notebook) if notebook.exists() else None,
            {
                "exit_code": code,
                "reason": summary.get("reason"),
                "usage": summary.get("usage"),
            },
        )

    async def _smolagents(
        self, task: Task
    ) -> tuple[str | None, str, Path, str | None, dict[str, Any]]:
        workdir = self.scratch / "smolagents" / task.id
        workdir.mkdir(parents=True)
        for name in task.files:
            shutil.copy2(self.data_dir / name, workdir / name)
        prompt_file = self.scratch / "smolagents" / f"{task.id}.prompt.txt"
        prompt_file.write_text(task.prompt())
        out = self.scratch / "smolagents" / f"{task.id}.json"
        command = [
            sys.executable,
            "-m",
            "tests.benchmarks.peer_smolagents",
            "--base-url",
            self.proxy.base_url,
            "--model",
            self.model,
            "--max-steps",
            str(self.args.max_steps),
            "--prompt-file",
            str(prompt_file),
            "--out",
            str(out),
        ]
        code, _ = await _run_process(
            command,
            cwd=workdir,
            env=self.env,
            timeout=self.args.timeout,
            log=self.scratch / "smolagents" / f"{task.id}.stderr.log",
        )
        if code is None or not out.exists():
            return (
                None,
                "timeout" if code is None else f"exit {code}",
                workdir,
                None,
                {"exit_code": code},
            )
        summary = json.loads(out.read_text())
        status = {"success": "completed", "max_steps_error": "step limit (forced answer)"}.get(
            summary["state"], summary["state"]
        )
        return (
            summary["answer"],
            status,
            workdir,
            None,
            {
                "steps": summary["steps"],
                "input_tokens": summary["input_tokens"],
                "output_tokens": summary["output_tokens"],
                "error": summary["error"],
                "trace": str(out),
            },
        )


# --- the report ------------------------------------------------------------------------------


def _cell(value: Any, limit: int = 40) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    text = "—" if value is None else " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def summarize(results: list[RunResult], agents: Iterable[str]) -> dict[str, dict[str, float]]:
    totals = {}
    for agent in agents:
        rows = [r for r in results if r.agent == agent]
        if not rows:
            continue
        totals[agent] = {
            "runs": len(rows),
            "passed": sum(r.passed for r in rows),
            "rate": sum(r.passed for r in rows) / len(rows),
            "seconds": sum(r.seconds for r in rows) / len(rows),
            "tokens": sum(r.tokens for r in rows) / len(rows),
            "steps": sum(r.steps for r in rows) / len(rows),
        }
    return totals


def split_lines(results: list[RunResult], agents: list[str]) -> list[str]:
    """Passes per split (tuning / held-out) and agent, when the results cover both splits."""
    present = sorted({split_of(r.task) for r in results})
    if len(present) < 2:
        return []
    lines = ["", "| split | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    for split in present:
        cells = []
        for agent in agents:
            rows = [r for r in results if r.agent == agent and split_of(r.task) == split]
            cells.append(f"{sum(r.passed for r in rows)}/{len(rows)}")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def render(
    results: list[RunResult],
    *,
    title: str,
    commands: list[str],
    notes: list[str],
    agents: list[str],
) -> str:
    lines = [f"## {title}", ""]
    lines += [f"Command: `{command}`  " for command in commands]
    machine = (
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, "
        f"Python {platform.python_version()}; written {datetime.now():%Y-%m-%d %H:%M}."
    )
    lines += [machine, ""]
    lines += [
        "| task | category | agent | answer | expected | pass | status | steps | seconds "
        "| tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {task_id: i for i, task_id in enumerate(dict.fromkeys(r.task for r in results))}
    for r in sorted(results, key=lambda r: (order[r.task], agents.index(r.agent))):
        mark = "yes" if r.passed else "**no**"
        lines.append(
            f"| {r.task} | {r.category} | {r.agent} | {_cell(r.answer)} | {_cell(r.expected)} | "
            f"{mark} | "
            f"{_cell(r.status, 30)} | {r.steps} | {r.seconds:.0f} | {r.tokens} |"
        )
    totals = summarize(results, agents)
    lines += [
        "",
        "| agent | tasks | passed | success rate | mean steps | mean seconds | mean tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for agent, t in totals.items():
        lines.append(
            f"| {agent} | {t['runs']} | {t['passed']} | {t['rate']:.0%} | {t['steps']:.1f} | "
            f"{t['seconds']:.0f} | {t['tokens']:.0f} |"
        )
    if "kernelagent" in totals and "smolagents" in totals:
        peer = totals["smolagents"]["rate"]
        ratio = (
            f"{totals['kernelagent']['rate'] / peer:.2f}"
            if peer
            else "n/a (smolagents solved none)"
        )
        lines += ["", f"Success-rate ratio kernelagent / smolagents: **{ratio}**"]
    lines += split_lines(results, agents)
    failures = [r for r in results if not r.passed and r.reason]
    if failures:
        lines += [
            "",
            "Why runs failed: "
            + "; ".join(f"{r.task}/{r.agent}: {_cell(r.reason, 60)}" for r in failures)
            + ".",
        ]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


HEADER = """# Task success: kernelagent vs smolagents

Data-analysis questions over generated CSV files (`tests/benchmarks/tasks/`), each with an
answer computed from the data; answers scored without an LLM judge (`tests/benchmarks/scoring.py`).
"steps" are model calls and "tokens" prompt + completion tokens, both counted at the model
server (same proxy for both agents); "seconds" is wall time per task, including kernelagent's
Docker sandbox start and each agent's process start.
"""


def write_report(path: Path, section: str, append: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if append and path.exists():
        path.write_text(path.read_text().rstrip("\n") + "\n\n" + section)
    else:
        path.write_text(HEADER + "\n" + section)


def keep_notebooks(results: list[RunResult], label: str, max_bytes: int) -> list[str]:
    """Copy kernelagent's notebooks (``<task>.ipynb``) and smolagents' step traces
    (``smolagents/<task>.json``) up to ``max_bytes`` each into results/task-notebooks/."""
    kept = []
    target = NOTEBOOKS / label
    for r in results:
        source = Path(r.notebook) if r.notebook else Path(r.agent_reported.get("trace") or "")
        if not source.name or not source.is_file() or source.stat().st_size > max_bytes:
            continue
        destination = (
            target / f"{r.task}.ipynb" if r.notebook else target / "smolagents" / f"{r.task}.json"
        )
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        kept.append(str(destination.relative_to(REPO)))
    return kept


def load_results(paths: list[Path]) -> tuple[list[RunResult], list[dict[str, Any]]]:
    """Results of earlier runs (their results.json); a later (task, agent) replaces an earlier
    one."""
    merged: dict[tuple[str, str], RunResult] = {}
    metas = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict):  # a run's results.json, or a merged table's raw results
            metas.extend(data["metas"] if "metas" in data else [data.get("meta", {})])
            data = data["results"]
        for row in data:
            result = RunResult(**row)
            merged[(result.task, result.agent)] = result
    return list(merged.values()), metas


def forced_answer_basis(result: RunResult) -> str:
    """Whether a forced answer repeats what an executed step printed, or is a guess."""
    trace_path = result.agent_reported.get("trace")
    if not trace_path or not Path(trace_path).exists():
        return "trace not kept"
    steps = json.loads(Path(trace_path).read_text())["trace"]
    ran = [step for step in steps if step.get("code") and not step.get("error")]
    if not ran:
        return "a guess: no code step had run without an error"
    wanted = normalize_string(result.answer)
    if any(wanted and wanted in normalize_string(step.get("observations") or "") for step in ran):
        return "the value was in an executed step's output"
    return "not in any executed step's output"


def report(results: list[RunResult], metas: list[dict[str, Any]], args: argparse.Namespace) -> str:
    agents = [a for a in AGENTS if any(r.agent == a for r in results)]
    by_task: dict[str, set[str]] = {}
    for r in results:
        by_task.setdefault(r.task, set()).add(r.agent)
    complete = [r for r in results if by_task[r.task] == set(agents)]
    partial = [r for r in results if by_task[r.task] != set(agents)]
    meta = metas[0] if metas else {}
    model = meta.get("model", args.model)
    label = str(model).replace("/", "_").replace(":", "_")
    kept = (
        keep_notebooks(complete + partial, label, args.keep_notebooks)
        if args.keep_notebooks
        else []
    )
    wall = sum(m.get("wall_minutes", 0) for m in metas)
    task_count = len({r.task for r in complete})
    setup = (
        f"Model `{model}` via {meta.get('server', 'llama.cpp (start_local_model)')}; kernelagent "
        f"`--api {meta.get('api')}{' --check-answers' if meta.get('check_answers') else ''}"
        f" --attempts {meta.get('attempts', 1)}`; smolagents "
        f"`CodeAgent` with `OpenAIServerModel`; max steps "
        f"{meta.get('max_steps')} for both; temperature {meta.get('temperature')} for both; output "
        f"cap "
        f"{meta.get('max_output_tokens') or 'none'} tokens per call; {task_count} of the suite's "
        f"{len(TASKS)} tasks "
        f"({meta.get('selection', '')}); wall time {wall:.1f} min."
    )
    environments = (
        "smolagents runs the model's code in the host process (host pandas/numpy); kernelagent "
        "runs it in its "
        "Docker sandbox (the image's pandas/numpy). The expected answers are identical under both."
    )
    limits = (
        "At its step limit smolagents asks the model for a final answer without running code; that "
        "answer is "
        "scored (status 'step limit (forced answer)'). kernelagent stops without an answer at its "
        "limit."
    )
    notes = [setup, environments, limits, *args.note]
    forced = [r for r in complete if r.agent == "smolagents" and r.passed and "forced" in r.status]
    if forced:
        notes.append(
            "smolagents passes that came from the forced answer at the step limit: "
            + "; ".join(f"{r.task} ({forced_answer_basis(r)})" for r in forced)
            + "."
        )
    if partial:
        notes.append(
            "Run by one agent only (not in the table or totals): "
            + "; ".join(
                f"{r.task}/{r.agent}: {'pass' if r.passed else 'fail'} ({_cell(r.answer, 20)})"
                for r in partial
            )
            + "."
        )
    if kept:
        notes.append(
            f"kernelagent notebooks and smolagents step traces: "
            f"`{NOTEBOOKS.relative_to(REPO)}/{label}/` "
            f"({len(kept)} files)."
        )
    commands = [m["command"] for m in metas if m.get("command")]
    section = render(
        complete,
        title=f"{model}, {task_count} tasks",
        commands=commands,
        notes=notes,
        agents=agents,
    )
    write_report(args.out, section, args.append)
    return section


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="qwen2.5-coder-1.5b",
        help="local catalog model (served here), or the model name at --base-url",
    )
    parser.add_argument(
        "--base-url", help="an OpenAI-compatible server; none: serve --model locally"
    )
    parser.add_argument(
        "--api", help="kernelagent --api (default: the local model's recommended one, else chat)"
    )
    parser.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS))
    parser.add_argument("--tasks", help="comma-separated task ids")
    parser.add_argument(
        "--representative", action="store_true", help="one or two tasks per category"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="the tuning tasks, the held-out ones (never tuned on), or all",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="kernelagent --attempts (parallel attempts that vote; 3 is its default for local "
        "models)",
    )
    parser.add_argument("--limit", type=int)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per task per agent")
    parser.add_argument(
        "--temperature",
        default="0",
        help="sent with every request to both agents; 'server' leaves the server default",
    )
    parser.add_argument(
        "--max-output-tokens",
        type=int,
        default=1024,
        help="output cap per model call when the agent sets none (0: none)",
    )
    parser.add_argument(
        "--check-answers",
        choices=("auto", "on", "off"),
        default="auto",
        help="kernelagent --check-answers; auto: on for a model served here, as `kernelagent run "
        "--model local` does",
    )
    parser.add_argument(
        "--order",
        choices=("agent", "task"),
        default="agent",
        help="agent: all tasks of one agent, then the other (keeps the server's prompt cache warm)",
    )
    parser.add_argument(
        "--budget-minutes", type=float, help="start no new run after this many minutes"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "tasks.md")
    parser.add_argument(
        "--append", action="store_true", help="add a section to --out instead of replacing it"
    )
    parser.add_argument(
        "--note", action="append", default=[], help="a note under the table (repeatable)"
    )
    parser.add_argument(
        "--keep-notebooks",
        type=int,
        default=150_000,
        help="keep kernelagent notebooks up to this many bytes (0: none)",
    )
    parser.add_argument(
        "--scratch", type=Path, help="where workspaces and traces go (default: a temp dir)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="run nothing: write the table from these results.json files (e.g. a run and its "
        "completion with --agents/--tasks); later files win",
    )
    return parser.parse_args(argv)


async def run_all(
    args: argparse.Namespace, argv: list[str]
) -> tuple[list[RunResult], dict[str, Any]]:
    tasks = select(
        args.tasks, representative=args.representative, limit=args.limit, split=args.split
    )
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="task-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    data_dir = scratch / "data"
    generate(data_dir)
    print(f"scratch: {scratch}; {len(tasks)} tasks x {len(args.agents)} agents", flush=True)
    handle = None
    if args.base_url:
        upstream, model, api = args.base_url, args.model, args.api or "chat"
    else:
        from kernelagent.localmodel import start_local_model

        handle = await start_local_model(args.model, on_notice=lambda line: print(line, flush=True))
        upstream, model, api = (
            handle.base_url,
            handle.model_name,
            args.api or handle.recommended_api,
        )
    temperature = None if args.temperature == "server" else float(args.temperature)
    proxy = RecordingProxy(
        upstream,
        temperature=temperature,
        max_tokens=args.max_output_tokens or None,
        api_key=os.environ.get("OPENAI_API_KEY") if args.base_url else None,
    ).start()
    slots = handle.parallel_slots if handle and handle.backend == "llama-server" else None
    runner = Runner(args, scratch, data_dir, proxy, model, api, decoding_slots=slots)
    selection = (
        f"tasks {args.tasks}"
        if args.tasks
        else "the representative subset"
        if args.representative
        else "all tasks"
    ) + (f", first {args.limit}" if args.limit else "")
    meta: dict[str, Any] = {
        "command": "python -m tests.benchmarks.run_tasks " + " ".join(shlex.quote(a) for a in argv),
        "model": model,
        "api": api,
        "server": f"`{args.base_url}`" if args.base_url else "llama.cpp (start_local_model)",
        "max_steps": args.max_steps,
        "check_answers": runner.check_answers,
        "attempts": args.attempts,
        "temperature": args.temperature,
        "max_output_tokens": args.max_output_tokens,
        "selection": selection,
        "started": datetime.now().isoformat(timespec="seconds"),
        "wall_minutes": 0.0,
    }
    results: list[RunResult] = []
    started = time.perf_counter()
    try:
        pairs = (
            [(agent, task) for agent in args.agents for task in tasks]
            if args.order == "agent"
            else [(agent, task) for task in tasks for agent in args.agents]
        )
        for agent, task in pairs:
            if args.budget_minutes and time.perf_counter() - started > 60 * args.budget_minutes:
                print(
                    f"budget of {args.budget_minutes} min used: {task.id} not run for {agent}",
                    flush=True,
                )
                continue
            result = await runner.run(agent, task)
            results.append(result)
            print(
                f"{task.id:28s} {agent:12s} {'PASS' if result.passed else 'fail'}  "
                f"{result.seconds:6.0f}s "
                f"steps={result.steps} tokens={result.tokens} answer={_cell(result.answer, 50)!s} "
                f"expected={_cell(result.expected, 30)} {result.status} {result.reason}",
                flush=True,
            )
            meta["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
            (scratch / "results.json").write_text(
                json.dumps(
                    {"meta": meta, "results": [asdict(r) for r in results]}, indent=1, default=str
                )
            )
    finally:
        proxy.stop()
        if handle is not None:
            await handle.aclose()
    return results, meta


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.merge:
        results, metas = load_results(args.merge)
    else:
        results, meta = asyncio.run(run_all(args, argv))
        metas = [meta]
    print(report(results, metas, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
