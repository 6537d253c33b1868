"""A throwaway PostgreSQL server for the tests (Debian's ``postgresql`` package, installed
by ``scripts/setup.sh --test``), on 127.0.0.1 only, with a fresh database per test.

Without the binaries the tests that need it skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
OS_USER = "postgres"
"""initdb refuses to run as root: the server runs as Debian's ``postgres`` user."""


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


class PostgresServer:
    """``initdb`` into a temporary directory, ``pg_ctl start`` on a free loopback port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="kernelagent-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.log = self.root / "server.log"
        """The server's output (pg_ctl must not leave it on a pipe of ours)."""
        if os.geteuid() == 0:
            shutil.chown(self.root, OS_USER)
        self._as_owner("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _options(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"

    def start(self) -> None:
        self._pg_ctl("start", "-o", self._options(), "-l", str(self.log))

    def restart(self) -> None:
        """A fast restart: every connection is cut, as when the server is restarted by hand."""
        self._pg_ctl("restart", "-m", "fast", "-o", self._options(), "-l", str(self.log))

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def create_database(self) -> str:
        import psycopg

        name = f"kernelagent_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def _pg_ctl(self, *args: str) -> None:
        self._as_owner("pg_ctl", "-D", str(self.data), "-w", "-t", "60", *args)

    def _as_owner(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{program} {args[:2]} failed: {done.stderr}{done.stdout}{tail}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin()
    problem = None
    if bin_dir is None:
        problem = "PostgreSQL is not installed (scripts/setup.sh --test installs it)"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "psycopg is not installed: pip install -e '.[test]'"
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true but the PostgreSQL tests cannot run: {problem}")
        pytest.skip(problem)
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The same test on both stores: the URL is also in $KERNELAGENT_STORE_URL, so the
    processes a test starts use it too (a new database per test on PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'index' / 'sessions.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    monkeypatch.setenv("KERNELAGENT_STORE_URL", url)
    return url
