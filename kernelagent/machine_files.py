"""Machine-wide services found through files: locks, atomic state, detached supervisors.

The shared model service (``localmodel``) and the warm sandbox pool (``sandbox``) both
keep a JSON state file and a few ``flock`` locks under a directory, and both run a
supervisor process that whichever process needs the service starts on demand. What they
share lives here, below both.

Locks are ``flock`` locks: the kernel drops them when their process dies, and two open
files of one process exclude each other, so liveness needs no pid bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

LOG_ROTATE_BYTES = 5 * 1024 * 1024


class LockTimeout(RuntimeError):
    """Another process held a lock for too long."""


class FileLock:
    """An exclusive (or shared) ``flock`` on a file; dropped by the kernel if we die."""

    timeout_error: type[Exception] = LockTimeout
    """Raised by :meth:`acquire` when the lock stays taken (a subclass may name its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def try_acquire(self, *, shared: bool = False) -> bool:
        if self._file is not None:
            return True
        handle = self.path.open("a+b")
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def acquire(self, timeout: float, what: str, poll: float = 0.1) -> None:
        """Block (in this thread) until the lock is ours; for supervisors and the CLI."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise self.timeout_error(lock_timeout_message(self.path, timeout, what))
            time.sleep(poll)

    async def acquire_async(
        self,
        timeout: float,
        what: str,
        *,
        on_wait: Callable[[], None] | None = None,
        poll: float = 0.1,
    ) -> None:
        """Wait without blocking the event loop (cancellable: nothing is left waiting)."""
        deadline = time.monotonic() + timeout
        waited = False
        while not self.try_acquire():
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if time.monotonic() > deadline:
                raise self.timeout_error(lock_timeout_message(self.path, timeout, what))
            await asyncio.sleep(poll)

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    @contextlib.contextmanager
    def held_for(self, timeout: float, what: str) -> Iterator[None]:
        self.acquire(timeout, what)
        try:
            yield
        finally:
            self.release()


def lock_timeout_message(path: Path, timeout: float, what: str) -> str:
    return (
        f"waited {timeout:.0f}s for another process to finish {what} ({path}); if no other "
        "kernelagent process is running, remove that file and try again"
    )


def lock_is_held(path: Path) -> bool:
    """True while some process (this one included) holds ``path`` locked."""
    if not path.exists():
        return False
    probe = FileLock(path)
    if probe.try_acquire(shared=True):
        probe.release()
        return False
    return True


def write_atomically(path: Path, text: str) -> None:
    """Temp file + ``os.replace``: readers never see half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_rss(pid: int | None) -> int | None:
    """Resident memory of a process in bytes (Linux ``/proc``), or None."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


# --- detached supervisors ----------------------------------------------------------------


def spawn_detached(module: str, argument: str, log: Path, cwd: Path, banner: str) -> int:
    """Run ``python -m module argument`` in a new session, its output appended to ``log``.

    The module forks once and its first process exits at once (see :func:`detach`), so
    the supervisor is nobody's child and outlives the caller. Returns the exit code of
    that first process (0: the supervisor is on its way)."""
    rotate_log(log)
    package_parent = str(Path(__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH")
    environment = {  # the supervisor runs this very kernelagent, wherever it is imported from
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_parent, *([inherited] if inherited else [])]),
    }
    with log.open("ab") as handle:
        handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {banner}\n".encode())
        handle.flush()
        starter = subprocess.Popen(
            [sys.executable, "-m", module, argument],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=cwd,
            env=environment,
        )
    return starter.wait()


def detach() -> None:
    """Called first thing by a supervisor's ``main``: the starter's child returns, the
    starter itself exits, so :func:`spawn_detached` comes back at once."""
    if os.fork() > 0:
        os._exit(0)


def rotate_log(log: Path) -> None:
    try:
        if log.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    except FileNotFoundError:
        pass


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def supervisor_log_line(who: str, message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{who} {os.getpid()} {stamp}] {message}", flush=True)
