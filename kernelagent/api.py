"""The Python API: run an agent session from code, async first.

result = kernelagent.run("Summarise sales.csv", data=["sales.csv"])        # sync
result = await kernelagent.arun("...", on_event=print)                      # async
async for event in kernelagent.astream("..."): ...                          # events
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import openai

from kernelagent.agent.approvals import ApprovalPolicy
from kernelagent.agent.loop import Decision, LoopLimits
from kernelagent.agent.model import Model, ModelAuthError
from kernelagent.agent.models_factory import make_model, resolve_api_key
from kernelagent.agent.openai_errors import to_model_error
from kernelagent.cluster.placement import Placement, cluster_address, node_environment
from kernelagent.errors import InvalidRequestError
from kernelagent.events import Event
from kernelagent.literals import ApprovalMode
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.session.durable import check_resumable, register, resume_session
from kernelagent.session.runner import SessionResult, run_to_stop
from kernelagent.session.session import ApiKind, Session, SessionConfig
from kernelagent.session.store import SessionRecord, SessionStore
from kernelagent.session.stream import EventStream

DEFAULT_MODEL = os.environ.get("KERNELAGENT_MODEL", "gpt-4.1-mini")
PREFLIGHT_TIMEOUT = 15.0
"""Seconds the pre-flight ``GET /models`` waits for an answer (then the server is busy)."""


def build_config(
    *,
    model: str | None = None,
    api: ApiKind = "responses",
    base_url: str | None = None,
    sandbox: str = "docker",
    image: str | None = None,
    max_steps: int = 30,
    cell_timeout: float = 300.0,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    price_per_million: tuple[float, float] | None = None,
    attempts: int = 1,
    approve: ApprovalMode = "never",
    approve_patterns: Sequence[str] = (),
    agent_memory: bool = True,
) -> SessionConfig:
    """A session's config from the Python API's keyword arguments (the CLI's flags)."""
    sandbox_settings = SandboxSettings(kind=sandbox)  # type: ignore[arg-type]
    if image:
        sandbox_settings.image = image
    return SessionConfig(
        model=model or DEFAULT_MODEL,
        api=api,
        base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
        sandbox=sandbox_settings,
        limits=LoopLimits(
            max_steps=max_steps,
            cell_timeout=cell_timeout,
            max_tokens=max_tokens,
            max_cost=max_cost,
            price_per_million=price_per_million,
            verify_answers=attempts > 1,
        ),
        attempts=attempts,
        approval=ApprovalPolicy(mode=approve, patterns=list(approve_patterns)),
        agent_memory=agent_memory,
    )


async def check_model_server(config: SessionConfig, api_key: str | None = None) -> None:
    """Fail fast, before any sandbox starts, when there is no key or no server.

    Asks ``GET /models`` once without retries. A server without that endpoint
    (404, 405) is fine, and so is a busy one: a request that waits in a queue (it
    times out after it was sent) or a 503/504 is not a dead server; the model calls
    retry those. Only a missing or rejected key, a refused connection or another
    server error stop here.
    """
    key = resolve_api_key(api_key, config.base_url)
    client = openai.AsyncOpenAI(
        base_url=config.base_url, api_key=key, max_retries=0, timeout=PREFLIGHT_TIMEOUT
    )
    try:
        await client.models.list()
    except (openai.NotFoundError, openai.UnprocessableEntityError):
        pass
    except openai.APIStatusError as error:
        busy = error.status_code in (503, 504)
        if error.status_code in (401, 403) or (error.status_code >= 500 and not busy):
            raise to_model_error(
                error, base_url=str(client.base_url), model=config.model, endpoint="/models"
            ) from error
    except openai.APITimeoutError as error:
        if not _answered_then_waited(error):
            raise to_model_error(
                error, base_url=str(client.base_url), model=config.model, endpoint="/models"
            ) from error
    except openai.OpenAIError as error:
        raise to_model_error(
            error, base_url=str(client.base_url), model=config.model, endpoint="/models"
        ) from error
    finally:
        await client.close()


def _answered_then_waited(error: openai.APITimeoutError) -> bool:
    """A read timeout (connected, the request sent, no reply yet: a busy server), not a
    connect timeout (nothing listens there)."""
    cause = error.__cause__ or error.__context__
    return cause is not None and "connect" not in type(cause).__name__.lower()


CHARS_PER_TOKEN = 3
"""A low estimate for code, tables and English (Qwen's tokenizer: ~3.5)."""
RESERVED_TOKENS = 1_536
"""Of a slot's context: the system prompt, the tool schemas and the reply."""


LOCAL_REPLY_TOKENS = 1024
"""A local model's replies stop here: a cell of code and a sentence fit well within it, and
at a few tokens a second on a CPU a longer reply would hold its slot for minutes."""


def context_chars_for(tokens: int) -> int:
    """How long the conversation may grow (``LoopLimits.context_chars``) on a server whose
    slots hold ``tokens``: longer, and the server refuses the request."""
    return max(4_000, (tokens - RESERVED_TOKENS) * CHARS_PER_TOKEN)


@asynccontextmanager
async def served_model(
    config: SessionConfig, on_notice: Callable[[str], None] | None = None
) -> AsyncIterator[SessionConfig]:
    """Hold a lease on the machine's shared server for the local model a config names
    (starting it if none runs; released after); else do nothing.

    The server's port can change between runs, so ``config.base_url`` and
    ``config.model`` are set to the running one's. How many requests it takes at once:
    ``kernelagent.localmodel.parallel_slots(config.base_url)``.
    """
    if config.local_model is None:
        yield config
        return
    from kernelagent.localmodel import start_local_model

    handle = await start_local_model(config.local_model or None, on_notice=on_notice)
    config.base_url, config.model = handle.base_url, handle.model_name
    if config.parallel_attempts is None:  # attempts share the server's decoding slots
        config.parallel_attempts = max(1, min(config.attempts, handle.parallel_slots))
    config.limits.context_chars = min(config.limits.context_chars, context_chars_for(handle.n_ctx))
    if config.max_reply_tokens is None:
        config.max_reply_tokens = LOCAL_REPLY_TOKENS
    if handle.backend == "llama-server" and config.decoding_slots is None:
        config.decoding_slots = handle.parallel_slots
    if not handle.reports_streaming_usage:
        config.stream = False  # llama-cpp-python's server counts tokens only without streaming
    try:
        yield config
    finally:
        await handle.aclose()


def model_for(config: SessionConfig, api_key: str | None = None) -> Model:
    return make_model(
        config.api,
        config.model,
        base_url=config.base_url,
        api_key=api_key,
        stream=config.stream,
        max_output_tokens=config.max_reply_tokens,
    )


async def arun(
    task: str,
    *,
    data: Sequence[str | Path] = (),
    workspace: str | Path | None = None,
    notebook: str | Path | None = None,
    config: SessionConfig | None = None,
    model_adapter: Model | None = None,
    api_key: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_session: Callable[[Session], None] | None = None,
    check_server: bool = True,
    keep_sandbox: bool = False,
    store: SessionStore | None = None,
    stream: EventStream | None = None,
    cluster: str | None = None,
    on_placed: Callable[[str], None] | None = None,
    **config_options: Any,
) -> SessionResult:
    """Run one agent session to its end; the notebook is written as it goes.

    ``cluster`` (default ``$KERNELAGENT_CLUSTER``; ``""`` for here) places the session on a
    node of that Ray cluster; its events still reach ``on_event`` and ``stream``, and
    ``on_placed`` gets its id once a node took it (before its sandbox is up there)."""
    config = config or build_config(**config_options)
    missing = [str(path) for path in data if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"data file not found: {', '.join(missing)}")
    store = store or SessionStore()  # an unreachable store fails here, before anything is made
    address = cluster_address(cluster)
    if address:
        _check_placeable(config, model_adapter, on_session, keep_sandbox)
        if check_server:
            await check_model_server(config, api_key)
        placement = Placement(
            kind="run",
            session_id=uuid.uuid4().hex[:12],
            instruction=task,
            config=config.model_dump(mode="json"),
            data=[str(Path(path).absolute()) for path in data],
            workspace=str(Path(workspace).absolute()) if workspace else None,
            notebook=str(Path(notebook).absolute()) if notebook else None,
            api_key=api_key,
            environment=node_environment(str(store.home.absolute()), store.given_url),
        )
        stream = stream or EventStream("")
        if on_event is not None:
            stream.subscribe(on_event)
        return await _placed(address, placement, stream, on_placed=on_placed)
    model = model_adapter
    if model is None:
        if check_server:
            await check_model_server(config, api_key)
        model = model_for(config, api_key)
    stream = stream or EventStream("")
    if on_event is not None:
        stream.subscribe(on_event)
    session = await Session.start(
        config, model, workspace=workspace, notebook=notebook, data=list(data), stream=stream
    )
    register(store, session, task)
    if on_session is not None:
        on_session(session)
    return await run_to_stop(session, task, store, model, keep_sandbox, new_task=True)


async def aresume(
    session_id: str,
    instruction: str | None = None,
    *,
    decision: Decision | None = None,
    model_adapter: Model | None = None,
    api_key: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    store: SessionStore | None = None,
    check_server: bool = True,
    stream: EventStream | None = None,
    cluster: str | None = None,
    **config_overrides: Any,
) -> SessionResult:
    """Resume a stored session (after approval, a restart or a crash) and run it on
    (on a node of ``cluster``, as for :func:`arun`)."""
    store = store or SessionStore()
    record = store.get(session_id)
    address = cluster_address(cluster)
    placed = bool(address) and record.node is not None  # its owner pid: a node host
    check_resumable(
        record.model_copy(update={"owner_pid": None}) if placed else record, instruction, decision
    )
    config = SessionConfig.model_validate(
        {**record.config, **{k: v for k, v in config_overrides.items() if v is not None}}
    )
    if config_overrides.get("base_url"):
        config.local_model = None
    stream = stream or EventStream(record.id)
    if on_event is not None:
        stream.subscribe(on_event)
    if address:
        _check_placeable(config, model_adapter, None, False)
        if check_server:
            await check_model_server(config, api_key)
        placement = Placement(
            kind="resume",
            session_id=record.id,
            instruction=instruction,
            config=config.model_dump(mode="json"),
            api_key=api_key,
            decision=decision.model_dump(mode="json") if decision else None,
            environment=node_environment(str(store.home.absolute()), store.given_url),
        )
        return await _placed(address, placement, stream, record)
    serving = served_model(config) if model_adapter is None else nullcontext(config)
    async with serving:
        model = model_adapter
        if model is None:
            if check_server:
                await check_model_server(config, api_key)
            model = model_for(config, api_key)
        session, _ = await resume_session(
            store,
            record.id,
            model,
            instruction=instruction,
            decision=decision,
            stream=stream,
            config=config,
        )
        return await run_to_stop(session, instruction, store, model)


async def acontinue(
    notebook: str | Path,
    instruction: str,
    *,
    config: SessionConfig,
    in_place: bool = False,
    out: str | Path | None = None,
    workspace: str | Path | None = None,
    api_key: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    check_server: bool = True,
    cluster: str | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> SessionResult:
    """Restore a recorded notebook's state and conversation in a new sandbox, then work on
    ``instruction``, recorded in a copy (``out``, default ``NAME-continued.ipynb``) or in
    the notebook itself (``in_place``); on a node of ``cluster`` as for :func:`arun`.
    ``on_notice`` gets one-line notes for a person: the local model starting, what was
    restored."""
    from kernelagent.session.continuation import continue_notebook, continued_path, restored_note

    path = Path(notebook).absolute()
    target = path if in_place else Path(out).absolute() if out else continued_path(path)
    address = cluster_address(cluster)
    if address:
        _check_placeable(config, None, None, False)
        if check_server:
            await check_model_server(config, api_key)
        store = SessionStore()
        placement = Placement(
            kind="continue",
            session_id=uuid.uuid4().hex[:12],
            instruction=instruction,
            config=config.model_dump(mode="json"),
            notebook=str(path),
            out=str(target),
            workspace=str(Path(workspace).absolute()) if workspace else None,
            api_key=api_key,
            environment=node_environment(str(store.home.absolute()), store.given_url),
        )
        stream = EventStream("")
        if on_event is not None:
            stream.subscribe(on_event)
        return await _placed(address, placement, stream)
    async with served_model(config, on_notice=on_notice):
        if check_server:
            await check_model_server(config, api_key)
        model = model_for(config, api_key)
        session, report = await continue_notebook(
            path,
            instruction,
            config,
            model,
            in_place=target == path,
            out=target,
            workspace=workspace,
            on_event=on_event,
        )
        if on_notice is not None:
            on_notice(f"restored: {report.summary()}")
        try:
            outcome = await session.run(f"{restored_note(report)}\n\n{instruction}")
        finally:
            await session.close()
    return SessionResult.of(session, outcome)


def _check_placeable(
    config: SessionConfig,
    model_adapter: Model | None,
    on_session: Callable[[Session], None] | None,
    keep_sandbox: bool,
) -> None:
    """What only a session in this process can do."""
    refused = [
        what
        for what, asked in (
            ("a model_adapter object", model_adapter is not None),
            ("on_session (the Session object)", on_session is not None),
            ("keep_sandbox", keep_sandbox),
            ("a local model kernelagent serves itself", config.local_model is not None),
        )
        if asked
    ]
    if refused:
        raise InvalidRequestError(
            f"a session placed on a cluster cannot use {', '.join(refused)}",
            hint="give the model by --base-url/--model, or run here (cluster='' or unset "
            "KERNELAGENT_CLUSTER)",
        )


async def _placed(
    address: str,
    placement: Placement,
    stream: EventStream,
    record: SessionRecord | None = None,
    *,
    on_placed: Callable[[str], None] | None = None,
) -> SessionResult:
    from kernelagent.cluster.submit import run_on_cluster

    stream.session_id = placement.session_id
    return await run_on_cluster(address, placement, stream, record, on_placed=on_placed)


async def astream(task: str, **options: Any) -> AsyncIterator[Event]:
    """The session's events as they happen."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    runner = asyncio.create_task(arun(task, on_event=queue.put_nowait, **options))
    runner.add_done_callback(lambda _: queue.put_nowait(None))
    while (event := await queue.get()) is not None:
        yield event
    await runner  # re-raise what ended the session, if anything


def run(task: str, **options: Any) -> SessionResult:
    """Synchronous wrapper around :func:`arun`."""
    return asyncio.run(arun(task, **options))


__all__ = [
    "ModelAuthError",
    "SessionResult",
    "acontinue",
    "arun",
    "astream",
    "build_config",
    "run",
]
