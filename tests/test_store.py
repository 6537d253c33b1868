"""The session store on both databases: records, status transitions, pending approvals,
event logs, schema versions, writers in many processes, row locks, and what an
unreachable or restarted PostgreSQL does."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kernelagent.agent.approvals import PendingApproval
from kernelagent.database.backend import migrate
from kernelagent.events import code_sha256
from kernelagent.session.store import (
    SessionNotFoundError,
    SessionRecord,
    SessionStateError,
    SessionStore,
    StoreUnavailableError,
)
from kernelagent.session.store.index import SCHEMA
from tests.postgres_fixtures import PostgresServer


def record(session_id: str, home: Path, status: str = "starting") -> SessionRecord:
    now = time.time()
    return SessionRecord(
        id=session_id,
        status=status,  # type: ignore[arg-type]
        task=f"task of {session_id}",
        created_at=now,
        updated_at=now,
        notebook=home / session_id / "session.ipynb",
        workspace=home / session_id / "workspace",
        config={"model": "m", "sandbox": {"kind": "docker"}},
        sandbox_state={"kernel_id": "k1"},
        owner_pid=os.getpid(),
    )


def test_records_transitions_and_approvals(store_url: str, tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert store.url == store_url
    store.create(record("abcdef123456", tmp_path))
    store.create(record("abcd99999999", tmp_path))
    assert store.get("abcdef").id == "abcdef123456"  # a unique prefix
    with pytest.raises(SessionNotFoundError, match="kernelagent sessions"):
        store.get("abcd")  # two sessions start so
    store.update("abcdef123456", status="running", reason="", steps=2, input_tokens=10**10)
    pending = PendingApproval(
        tool_call_id="call_1",
        cell_id="c1",
        kind="shell",
        code="%%bash\nls",
        code_sha256=code_sha256("%%bash\nls"),
        reason="shell commands need approval",
    )
    store.update("abcdef123456", status="awaiting_approval", pending=pending)
    got = store.get("abcdef123456")
    assert (got.status, got.steps, got.input_tokens) == ("awaiting_approval", 2, 10**10)
    assert got.pending == pending and got.sandbox_state == {"kernel_id": "k1"}
    assert got.config["sandbox"]["kind"] == "docker" and got.node is None
    with pytest.raises(SessionStateError, match="cannot go from awaiting_approval to completed"):
        store.update("abcdef123456", status="completed")
    store.update("abcdef123456", status="running", pending=None, node="node-a")
    assert store.get("abcdef123456").pending is None
    assert store.get("abcdef123456").node == "node-a"
    assert [r.id for r in store.list()] == ["abcd99999999", "abcdef123456"]
    with pytest.raises(SessionNotFoundError):
        store.update("nosuchsession", status="running")
    with pytest.raises(ValueError, match="not columns"):
        store.update("abcdef123456", **{"status = 'x'; --": 1})


def test_event_logs_keep_order_and_the_first_of_a_seq(store_url: str, tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.append_events("s1", [{"seq": 2, "type": "b"}, {"seq": 1, "type": "a"}])
    store.append_events("s1", [{"seq": 2, "type": "again"}, {"seq": 3, "type": "c"}])
    store.append_events("s2", [{"seq": 1, "type": "other"}])
    assert [e["type"] for e in SessionStore(tmp_path).events("s1")] == ["a", "b", "c"]
    assert store.events("nothing") == []


def test_the_schema_is_made_once_and_versioned(store_url: str, tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert migrate(store.backend, "sessions", SCHEMA) == len(SCHEMA["sqlite"])  # nothing to do
    newer = {dialect: [*steps, ["SELECT 1"]] for dialect, steps in SCHEMA.items()}
    migrate(store.backend, "sessions", newer)
    with pytest.raises(StoreUnavailableError, match="newer than this kernelagent knows"):
        SessionStore(tmp_path)  # this kernelagent knows one version less
    # another component (a memory store, say) has its own versions in the same database
    steps = ["CREATE TABLE notes_of_test (id INTEGER PRIMARY KEY, body TEXT)"]
    assert migrate(store.backend, "test-notes", {"sqlite": [steps], "postgresql": [steps]}) == 0
    store.backend.run(lambda tx: tx.execute("INSERT INTO notes_of_test VALUES (%s, %s)", (1, "x")))
    rows = store.backend.run(lambda tx: tx.query("SELECT body FROM notes_of_test"))
    assert rows == [{"body": "x"}]


def test_an_index_made_before_schema_versions_is_migrated(tmp_path: Path) -> None:
    """SQLite stores made by earlier kernelagent versions (no version table, no node
    column, event logs in files) keep their sessions and gain what is new."""
    db = sqlite3.connect(tmp_path / "sessions.db")
    db.executescript(SCHEMA["sqlite"][0][0])
    old = record("0123456789ab", tmp_path, status="completed")
    columns = [c for c in SessionRecord.model_fields if c != "node"]
    values = [json.dumps(v) if isinstance(v, dict) else v for v in old.model_dump().values()]
    values = [str(v) if isinstance(v, Path) else v for v in values][: len(columns)]
    db.execute(
        f"INSERT INTO sessions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        values,
    )
    db.commit()
    db.close()
    store = SessionStore(tmp_path, url=f"sqlite://{tmp_path / 'sessions.db'}")
    assert store.get("0123456789ab").status == "completed"
    store.update("0123456789ab", node="n1")
    assert store.get("0123456789ab").node == "n1"


def _writer(url: str, home: str, worker: int, shared: str, count: int) -> None:
    store = SessionStore(home, url=url)
    own = f"worker{worker:02d}0000"
    store.create(record(own, Path(home)))
    store.update(own, status="running")
    for step in range(1, count + 1):
        store.update(own, steps=step, cells=step)
        store.update(shared, status="awaiting_approval" if step % 2 else "running")
        store.append_events(shared, [{"seq": worker * 1000 + step, "type": "output"}])
    store.update(own, status="completed")


def test_writers_in_many_processes_lose_nothing(store_url: str, tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.create(record("shared000000", tmp_path, status="running"))
    workers, count = 4, 25
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_writer, args=(store_url, str(tmp_path), n, "shared000000", count))
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    for n in range(workers):
        done = store.get(f"worker{n:02d}0000")
        assert (done.status, done.steps, done.cells) == ("completed", count, count)
    assert len(store.events("shared000000")) == workers * count
    assert store.get("shared000000").status in ("running", "awaiting_approval")


def _claimer(url: str, home: str, node: str, won: Any) -> None:
    store = SessionStore(home, url=url)
    lost = lambda current: current.status == "running" and current.node == "lost-node"  # noqa: E731
    if store.update_if("claimed00000", lost, status="interrupted", node=node):
        won.put(node)


def test_a_session_is_taken_over_by_one_claimer_only(store_url: str, tmp_path: Path) -> None:
    """Node hosts on many machines claim a session whose node died at the same moment:
    one locked update each, and exactly one of them gets it."""
    store = SessionStore(tmp_path)
    store.create(record("claimed00000", tmp_path, status="running"))
    store.update("claimed00000", node="lost-node")
    context = multiprocessing.get_context("spawn")
    won = context.Queue()
    processes = [
        context.Process(target=_claimer, args=(store_url, str(tmp_path), f"node-{n}", won))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * 4
    winners = []
    with contextlib.suppress(queue.Empty):
        while True:
            winners.append(won.get(timeout=2))
    assert len(winners) == 1, winners
    claimed = store.get("claimed00000")
    assert (claimed.status, claimed.node) == ("interrupted", winners[0])
    assert not store.update_if("claimed00000", lambda current: current.status == "running")


def test_a_status_check_waits_for_the_row_lock(postgres: PostgresServer, tmp_path: Path) -> None:
    """Another host holds the session's row and finishes the session; the update that
    waited for the row sees ``completed`` and refuses to pause it."""
    import psycopg

    url = postgres.create_database()
    store = SessionStore(tmp_path, url=url)
    store.create(record("locked000000", tmp_path, status="running"))
    refused: list[BaseException] = []

    def pause() -> None:
        try:
            SessionStore(tmp_path, url=url).update("locked000000", status="paused")
        except SessionStateError as error:
            refused.append(error)

    with psycopg.connect(url) as other_host:
        other_host.execute("SELECT status FROM sessions WHERE id = 'locked000000' FOR UPDATE")
        thread = threading.Thread(target=pause)
        thread.start()
        _wait_for_a_lock_wait(url)
        other_host.execute("UPDATE sessions SET status = 'completed' WHERE id = 'locked000000'")
        other_host.commit()
    thread.join(timeout=30)
    assert refused and "cannot go from completed to paused" in str(refused[0])
    assert store.get("locked000000").status == "completed"


def _wait_for_a_lock_wait(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(300):
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.1)
    raise AssertionError("the update never waited for the row lock")


def test_writes_go_on_after_postgres_restarts(postgres: PostgresServer, tmp_path: Path) -> None:
    store = SessionStore(tmp_path, url=postgres.create_database())
    store.create(record("restart00000", tmp_path, status="running"))
    postgres.restart()  # the store's connection is cut
    store.update("restart00000", steps=7)
    store.append_events("restart00000", [{"seq": 1, "type": "cell_started"}])
    assert store.get("restart00000").steps == 7 and len(store.events("restart00000")) == 1


def test_an_unreachable_store_is_one_clear_line_and_writes_nothing(tmp_path: Path) -> None:
    url = "postgresql://kernelagent:secret@127.0.0.1:9/nowhere"  # nothing listens on port 9
    env = {**os.environ, "KERNELAGENT_HOME": str(tmp_path / "home")}
    env.pop("KERNELAGENT_STORE_URL", None)
    for args in (["sessions"], ["run", "task", "--base-url", "http://127.0.0.1:9/v1"]):
        done = subprocess.run(
            [sys.executable, "-m", "kernelagent.cli", "--store", url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 1, done.stderr
        first, hint = done.stderr.strip().splitlines()
        assert first.startswith("error: cannot reach the session store postgresql://")
        assert "secret" not in done.stderr and "Connection refused" in first
        assert "KERNELAGENT_STORE_URL" in hint
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "sessions").exists()  # no notebook, no workspace


def test_a_server_event_log_kept_in_a_file_moves_into_the_store(tmp_path: Path) -> None:
    """Servers before the store kept event logs in <home>/server-events/<id>.jsonl."""
    import logging

    from kernelagent.server.event_log import EventLogs

    legacy = tmp_path / "server-events" / "oldsession01.jsonl"
    legacy.parent.mkdir()
    legacy.write_text('{"seq": 1, "type": "session_started"}\n{"seq": 2, "type": "ou')
    store = SessionStore(tmp_path, url=f"sqlite://{tmp_path / 'sessions.db'}")
    entry = EventLogs(store, logging.getLogger("test")).entry("oldsession01")
    assert [e["seq"] for e in entry.events] == [1]  # the line cut short by a crash is dropped
    assert store.events("oldsession01") == [{"seq": 1, "type": "session_started"}]
