"""``kernelagent sessions`` for scripts: full values in plain columns when stdout is a pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from kernelagent.session.store import SessionRecord, SessionStore

LONG_TASK = (
    "Clean the raw export, join it with the regions table and plot revenue per month for 2023"
)


def test_sessions_prints_full_values_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    now = time.time()
    for session_id, status, task in [
        ("aaaaaaaaaaaa", "awaiting_approval", LONG_TASK),
        ("bbbbbbbbbbbb", "completed", "short\ttask\nwith breaks"),
    ]:
        store.create(
            SessionRecord(
                id=session_id,
                status=status,
                task=task,
                created_at=now - 120,
                updated_at=now,
                steps=3,
                cells=2,
                input_tokens=100,
                output_tokens=23,
                notebook=tmp_path / session_id / "session.ipynb",
                workspace=tmp_path / session_id / "ws",
                config={},
            )
        )
    done = subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", "sessions"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KERNELAGENT_HOME": str(tmp_path), "COLUMNS": "60"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "TASK", "AGE", "STEPS", "CELLS", "TOKENS"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert f"awaiting_approval   {LONG_TASK}   2m" in by_id["aaaaaaaaaaaa"]
    assert re.split(r" {3,}", by_id["bbbbbbbbbbbb"])[2] == "short task with breaks"
    status_column = lines[0].index("STATUS")
    assert all(
        line[status_column:].split()[0] in ("STATUS", "awaiting_approval", "completed")
        for line in lines
    )
    assert by_id["aaaaaaaaaaaa"].endswith("123")
