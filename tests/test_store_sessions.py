"""Sessions on a PostgreSQL store: a restart of PostgreSQL while a cell runs loses
nothing (the session's writes wait for it and go on)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nbformat

import kernelagent.api as api
from kernelagent.session.store import SessionStore
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.postgres_fixtures import PostgresServer


def _server_started_at(url: str) -> float:
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT extract(epoch FROM pg_postmaster_start_time())")
        return float(row.fetchone()[0])  # type: ignore[index]


def test_a_session_goes_on_when_postgres_restarts_mid_cell(
    docker_available: None, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database()
    store = SessionStore(tmp_path / "home", url=url)
    script = [
        ScriptedTurn.python("x = 20"),
        ScriptedTurn.python("import time\ntime.sleep(6)\nprint('slept')"),
        ScriptedTurn.python("x + 1"),
        ScriptedTurn.final("21"),
    ]
    before = _server_started_at(url)
    with ScriptedModelServer(script) as server:

        def restart_during_the_slow_cell() -> None:
            deadline = time.monotonic() + 120
            while len(server.completion_requests()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            postgres.restart()

        restarter = threading.Thread(target=restart_during_the_slow_cell)
        restarter.start()
        result = api.run(
            "task",
            base_url=server.base_url,
            model="m",
            workspace=tmp_path / "ws",
            notebook=tmp_path / "s.ipynb",
            store=store,
        )
        restarter.join()
    restarted = _server_started_at(url)
    assert restarted > before
    assert result.status == "completed" and result.answer == "21"
    cells = [c for c in nbformat.read(tmp_path / "s.ipynb", as_version=4).cells]
    code = [c for c in cells if c.cell_type == "code"]
    assert [c.metadata.kernelagent.status for c in code] == ["ok", "ok", "ok"]
    assert code[2].outputs[0]["data"]["text/plain"] == "21"
    record = SessionStore(tmp_path / "home", url=url).get(result.session_id)
    assert record.status == "completed" and record.cells == 3 and record.steps == 4
    assert record.input_tokens > 0 and record.sandbox_state is None
    assert record.updated_at > restarted  # written after the restart, on a new connection
