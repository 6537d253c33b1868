"""Parallel attempts at one task, and the vote that gives the session its answer.

The session itself is attempt 1: its sandbox, workspace and notebook, at the session's own
temperature. Attempts 2..K are branch sessions, each in its own sandbox on its own copy of
the workspace, recorded as its own notebook under ``<notebook>.attempts/`` and sampled at
``config.attempt_temperature``. Their events reach the session's stream marked with their
number (the CLI and the panel show them; the session's recorder and index skip them).

When the attempts end (or as soon as a strict majority agrees: the rest are stopped), the
grounded answers vote (``agent.voting``). If an attempt other than 1 wins, the session
adopts it: its notebook becomes the session notebook (attempt 1's own record moves to the
branch directory), its workspace replaces the session's, and its conversation is the one a
later ``continue`` or ``resume`` carries on. The vote is recorded as a cell and in
``metadata.kernelagent.vote`` / ``.attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from kernelagent.agent.loop import Outcome
from kernelagent.agent.model import Model
from kernelagent.agent.openai_adapter import OpenAIAdapter
from kernelagent.agent.voting import Ballot, Tally, majority_reached, tally
from kernelagent.events import (
    AttemptFinished,
    AttemptStarted,
    Error,
    Event,
    SessionStatus,
    Usage,
    UsageUpdated,
    VoteDecided,
)
from kernelagent.notebook.branches import adopt_branch, mark_branch
from kernelagent.notebook.recorder import NotebookRecorder
from kernelagent.sandbox.workspace_access import share_tree_with_sandbox_user
from kernelagent.session.session import Session
from kernelagent.session.stream import EventStream


@dataclass
class Attempt:
    number: int
    session: Session | None = None
    temperature: float | None = None
    outcome: Outcome | None = None
    error: BaseException | None = None
    stopped: bool = False
    """Stopped because a majority had agreed without it."""

    def ballot(self) -> Ballot:
        outcome = self.outcome
        if self.stopped:
            return Ballot(self.number, "stopped", detail="a majority had agreed")
        if outcome is None:
            return Ballot(self.number, "failed", detail=str(self.error or "did not finish"))
        loop = self.session.loop if self.session is not None else None
        last_error = loop.memory.recent_errors[-1][1] if loop and loop.memory.recent_errors else ""
        answer = outcome.answer if outcome.status == "completed" else None
        return Ballot(
            self.number,
            outcome.status,
            answer=answer,
            grounded=bool(loop and loop.answer_grounded),
            detail=outcome.reason + (f"; last error: {last_error}" if last_error else ""),
            failed_cells=len(loop.memory.failed) if loop else 0,
            ignored_numbers=tuple(loop.answers.numbers_ignored()) if loop else (),
            printed=loop.answers.printed_value() if loop else None,
        )


def attempts_allowed(session: Session) -> str | None:
    """Why attempts cannot run for this session (None: they can)."""
    approval = session.config.approval
    if approval.mode != "never" or approval.patterns or approval.writes_outside_workspace:
        return "actions of this session need approval, which parallel attempts cannot wait for"
    return None


def branch_directory(notebook: Path) -> Path:
    return notebook.with_name(f"{notebook.stem}.attempts")


async def run_attempts(session: Session, instruction: str, model: Model) -> Outcome:
    """Run ``config.attempts`` attempts at ``instruction``; finish the session with the vote."""
    config = session.config
    count = config.attempts
    parallel = config.parallel_attempts or (count if config.local_model is None else 1)
    if config.decoding_slots is not None:
        parallel = min(parallel, config.decoding_slots)
    attempts = [Attempt(1, session, config.limits.temperature)]
    attempts += [Attempt(n, temperature=config.attempt_temperature) for n in range(2, count + 1)]
    directory = branch_directory(session.notebook_path)
    for attempt in attempts[1:]:  # every attempt starts from the workspace as it is now
        _copy_workspace(session.workspace, branch_workspace(directory, attempt.number))
    running: dict[asyncio.Task[Outcome], Attempt] = {}
    free_slots = list(range(parallel))
    slot_of: dict[asyncio.Task[Outcome], int] = {}
    waiting = list(attempts)
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                attempt = waiting.pop(0)
                runner = _run_main if attempt.number == 1 else _run_branch
                slot = free_slots.pop(0)
                pinned = config.decoding_slots is not None
                on_slot = on_decoding_slot(model, slot) if pinned else model
                task = asyncio.create_task(
                    runner(session, attempt, instruction, on_slot, directory, count)
                )
                running[task], slot_of[task] = attempt, slot
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                attempt = running.pop(task)
                free_slots.append(slot_of.pop(task))
                if task.cancelled():
                    attempt.stopped = True
                elif (error := task.exception()) is not None:
                    attempt.error = error
                else:
                    attempt.outcome = task.result()
                _report(session, attempt)
            finished = [
                a.ballot() for a in attempts if a.outcome is not None or a.error is not None
            ]
            if (running or waiting) and majority_reached(finished, count, instruction):
                await _stop(running)
                for attempt in waiting:
                    attempt.stopped = True
                waiting.clear()
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _stop(running)
        session.finish(Outcome("interrupted", reason="stopped by the user"))
        raise
    finally:
        for attempt in attempts[1:]:
            if attempt.session is not None:
                with contextlib.suppress(Exception):
                    await attempt.session.close()
    ran = [a for a in attempts if not a.stopped]
    result = tally([a.ballot() for a in ran], count, instruction)
    return _conclude(session, attempts, result, directory)


async def _run_main(
    session: Session, attempt: Attempt, instruction: str, model: Model, directory: Path, count: int
) -> Outcome:
    _announce(session, attempt, count, session.notebook_path)
    own_model = session.loop.model
    session.loop.model = model
    try:
        return await session.run(instruction, finish=False)
    finally:
        session.loop.model = own_model


def on_decoding_slot(model: Model, slot: int) -> Model:
    """``model`` pinned to one decoding slot of kernelagent's own model server (llama-server's
    ``id_slot``): each attempt's long prompt then stays cached in its slot, where attempts
    that land on whichever slot is free evict each other's and recompute it every turn."""
    if not isinstance(model, OpenAIAdapter):
        return model
    return model.with_extra_params(extra_body={"id_slot": slot})


async def _run_branch(
    session: Session, attempt: Attempt, instruction: str, model: Model, directory: Path, count: int
) -> Outcome:
    notebook = directory / f"attempt-{attempt.number}.ipynb"
    workspace = branch_workspace(directory, attempt.number)
    config = session.config.model_copy(deep=True)
    config.limits.temperature = attempt.temperature
    config.attempts = 1
    stream = EventStream("")
    stream.subscribe(lambda event: _forward(session, attempt.number, event))
    branch = await Session.start(
        config, model, workspace=workspace, notebook=notebook, stream=stream
    )
    attempt.session = branch
    branch.writes_memory = False
    inputs = session.recorder.notebook.metadata.get("kernelagent", {}).get("inputs", [])
    branch.recorder.update_metadata(inputs=list(inputs), **mark_branch(session.id, attempt.number))
    _announce(session, attempt, count, notebook)
    return await branch.run(instruction)


def branch_workspace(directory: Path, number: int) -> Path:
    return directory / f"attempt-{number}" / "workspace"


def _copy_workspace(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)
    share_tree_with_sandbox_user(target)


def _forward(session: Session, number: int, event: Event) -> None:
    session.stream.emit(event.model_copy(update={"attempt": number}))


def _announce(session: Session, attempt: Attempt, count: int, notebook: Path) -> None:
    session.stream.emit(
        AttemptStarted(
            number=attempt.number,
            of=count,
            temperature=attempt.temperature,
            notebook_path=str(notebook),
            attempt=attempt.number,
        )
    )


def _report(session: Session, attempt: Attempt) -> None:
    ballot = attempt.ballot()
    notebook = session.notebook_path if attempt.number == 1 else attempt_notebook(session, attempt)
    session.stream.emit(
        AttemptFinished(
            number=attempt.number,
            status=_session_status(ballot.status),
            answer=ballot.answer,
            grounded=ballot.grounded,
            reason=ballot.detail,
            last_error=str(attempt.error or ""),
            notebook_path=str(notebook),
            attempt=attempt.number,
        )
    )


def _session_status(status: str) -> SessionStatus:
    """A ballot's status as a session status (an attempt stopped early was interrupted)."""
    known: tuple[SessionStatus, ...] = get_args(SessionStatus)
    return next((s for s in known if s == status), "interrupted")


def attempt_notebook(session: Session, attempt: Attempt) -> Path:
    if attempt.session is not None:
        return attempt.session.notebook_path
    return branch_directory(session.notebook_path) / f"attempt-{attempt.number}.ipynb"


async def _stop(running: dict[asyncio.Task[Outcome], Attempt]) -> None:
    for task, attempt in running.items():
        attempt.stopped = True
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    running.clear()


def _conclude(session: Session, attempts: list[Attempt], result: Tally, directory: Path) -> Outcome:
    """Adopt the chosen attempt, record the vote and finish the session."""
    total = Usage()
    for attempt in attempts:
        if attempt.session is not None:
            total = total + attempt.session.loop.state.usage
    chosen = next((a for a in attempts if a.number == result.chosen), None)
    kept: list[str] = []
    if chosen is not None and chosen.number != 1 and chosen.session is not None:
        kept = _adopt(session, chosen.session, directory)
    session.loop.state.usage = total
    described = [_attempt_metadata(session, a) for a in attempts]
    session.recorder.update_metadata(
        attempts=described,
        vote={
            "chosen": result.chosen,
            "agreeing": result.agreeing,
            "attempts": result.attempts,
            "majority": result.majority,
            "summary": result.summary,
            "workspace_kept": kept,
        },
    )
    session.stream.emit(UsageUpdated(usage=Usage(), total=total))
    session.stream.emit(
        VoteDecided(
            chosen=result.chosen,
            answer=result.answer,
            agreeing=result.agreeing,
            attempts=result.attempts,
            majority=result.majority,
            summary=result.summary,
            notebooks=[entry["notebook"] for entry in described],
        )
    )
    if result.chosen is not None:
        outcome = Outcome("completed", answer=result.answer, reason=result.summary)
    else:
        main = attempts[0]
        base = main.outcome or Outcome("failed")
        outcome = Outcome(base.status, reason=result.summary)
        if main.error is not None:
            session.finish(outcome)
            raise main.error
    session.finish(outcome)
    return outcome


def _adopt(session: Session, branch: Session, directory: Path) -> list[str]:
    """Make the chosen branch the session's record; returns the workspace files it changed."""
    directory.mkdir(parents=True, exist_ok=True)
    session.recorder.save()
    own_record = directory / "attempt-1.ipynb"
    shutil.copy2(session.notebook_path, own_record)
    _copy_workspace(session.workspace, branch_workspace(directory, 1))
    adopt_branch(branch.notebook_path, session.notebook_path, session.id, own_record=own_record)
    recorder = NotebookRecorder.open(session.notebook_path, session_id=session.id)
    session.stream.replace_subscriber(session.recorder.handle, recorder.handle)
    session.recorder = recorder
    kept = _mirror(branch.workspace, session.workspace)
    share_tree_with_sandbox_user(session.workspace)
    session.conversation = branch.conversation
    session.loop.conversation = branch.conversation
    session.loop.state.steps = branch.loop.state.steps
    session.loop.state.cells = branch.loop.state.cells
    return kept


def _mirror(source: Path, target: Path) -> list[str]:
    """Make ``target`` hold what ``source`` holds; returns the paths that changed."""
    changed = []
    for path in sorted(target.rglob("*")):
        relative = path.relative_to(target)
        if not (source / relative).exists() and not path.is_dir():
            path.unlink()
            changed.append(f"-{relative}")
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        destination = target / relative
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif not destination.exists() or not filecmp.cmp(path, destination, shallow=False):
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            changed.append(str(relative))
    return changed


def _attempt_metadata(session: Session, attempt: Attempt) -> dict[str, Any]:
    ballot = attempt.ballot()
    if attempt.number == 1:
        record = branch_directory(session.notebook_path) / "attempt-1.ipynb"
        notebook = record if record.exists() else session.notebook_path
    else:
        notebook = attempt_notebook(session, attempt)
    return {
        "number": attempt.number,
        "temperature": attempt.temperature,
        "status": ballot.status,
        "answer": ballot.answer,
        "grounded": ballot.grounded,
        "detail": ballot.detail,
        "failed_cells": ballot.failed_cells,
        "ignored_numbers": list(ballot.ignored_numbers),
        "notebook": _relative(notebook, session.notebook_path.parent),
    }


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def refuse_attempts(session: Session, why: str) -> None:
    """Tell the person (and the notebook) that this session runs one attempt, and why."""
    session.stream.emit(
        Error(message=f"running one attempt instead of {session.config.attempts}: {why}")
    )
