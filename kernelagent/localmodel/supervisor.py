"""The model service's supervisor: a detached process that owns one model server.

Started by :func:`kernelagent.localmodel.service.acquire` as
``python -m kernelagent.localmodel.supervisor SPEC_JSON`` in a new session; it forks
once and the starter's child exits, so the supervisor belongs to no client and outlives
the process that started it. It then

* holds ``<key>.alive`` locked for as long as it lives (clients test that lock);
* starts the server on 127.0.0.1 (llama-server, or llama-cpp-python's server) as its own
  child, which dies with it (``PR_SET_PDEATHSIG``), and writes ``<key>.json``;
* every half second counts the live leases: with none for ``idle_timeout`` seconds it
  stops the server and exits; a server that died while sessions use it is started
  again on the same port (at most 3 times in 5 minutes), one that died unused is not;
* on SIGTERM (``kernelagent model stop``) stops the server and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from kernelagent.errors import KernelAgentError
from kernelagent.localmodel.backends import (
    BackendChoice,
    ServeOptions,
    server_command,
    server_ready,
)
from kernelagent.localmodel.server import choose_port
from kernelagent.localmodel.service_files import (
    FileLock,
    ServicePaths,
    ServiceState,
    SupervisorSpec,
    live_leases,
    remove_state,
    write_state,
)
from kernelagent.machine_files import detach, supervisor_log_line

POLL_SECONDS = 0.5
RESTARTS_ALLOWED = 3
RESTART_WINDOW_SECONDS = 300.0


class ServerFailed(KernelAgentError, RuntimeError):
    pass


def log(message: str) -> None:
    supervisor_log_line("supervisor", message)


def exit_hint(code: int) -> str:
    if code == -signal.SIGILL:
        return (
            ": SIGILL, the server was built for CPU instructions this machine does not run; "
            "rebuild it here: `kernelagent model install-server --force` (llama-server), or "
            "reinstall llama-cpp-python with CMAKE_ARGS=-DGGML_NATIVE=OFF"
        )
    return ""


def _die_with_parent() -> None:  # pragma: no cover (runs in the child)
    """Linux: SIGTERM the server when the supervisor (the thread that forked it) dies."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    def __init__(self, spec: SupervisorSpec) -> None:
        self.spec = spec
        self.paths = ServicePaths.of(spec.key, Path(spec.root))
        self.choice = BackendChoice(spec.backend, Path(spec.binary) if spec.binary else None)
        self.options = ServeOptions(
            parallel_slots=spec.parallel_slots,
            ctx_per_slot=spec.ctx_per_slot,
            max_reply_tokens=spec.max_reply_tokens,
            threads=spec.threads,
            chat_format=spec.chat_format,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.restart_times: list[float] = []
        self.state = ServiceState(
            key=spec.key,
            model=spec.model,
            model_path=spec.model_path,
            model_size=spec.model_size,
            model_mtime_ns=spec.model_mtime_ns,
            sha256=spec.sha256,
            backend=spec.backend,
            port=0,
            supervisor_pid=os.getpid(),
            instance=spec.instance,
            started=time.time(),
            parallel_slots=self.choice.slots(self.options),
            ctx_per_slot=spec.ctx_per_slot,
            max_reply_tokens=spec.max_reply_tokens,
            idle_timeout=spec.idle_timeout,
            recommended_api=spec.recommended_api,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        alive = FileLock(self.paths.alive)
        if not alive.try_acquire():
            log(f"another supervisor already serves {self.spec.key}; exiting")
            return 1
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        failed = False
        try:
            try:
                self._start_on_a_free_port()
            except ServerFailed as error:
                failed = True
                self._publish(status="failed", error=str(error))
                log(f"could not start the server: {error}")
                return 1
            self._publish(status="ready", ready_at=time.time())
            log(
                f"serving {self.spec.model} ({self.spec.backend}, {self.state.parallel_slots} "
                f"slots of {self.spec.ctx_per_slot} tokens) at {self.state.base_url}, pid "
                f"{self.state.pid}; stops after {self.spec.idle_timeout:.0f}s without sessions"
            )
            self._watch()
            return 0
        finally:
            self._stop_server()
            if not failed:
                remove_state(self.paths, self.spec.instance)
            log("stopped")
            alive.release()

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        log(f"signal {signum}: stopping")
        self.stopping = True

    def _publish(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self.state, name, value)
        write_state(self.paths, self.state)

    # -- the server --------------------------------------------------------------------

    def _start_on_a_free_port(self) -> None:
        """The preferred port (a dead service's, so its sessions find the new server) if
        it is free, else one the OS picks; again on another port if it was taken meanwhile."""
        requested = self.spec.preferred_port
        for _attempt in range(3):
            self.state.port = choose_port(requested).port
            write_state(self.paths, self.state)
            try:
                self._start_server()
                return
            except ServerFailed as error:
                if "address already in use" not in str(error).lower():
                    raise
                log(f"port {self.state.port} was taken while the server started: another port")
                requested = None
        raise ServerFailed(f"could not find a free port on {self.state.host} for the server")

    def _start_server(self) -> None:
        command = server_command(
            self.choice, Path(self.spec.model_path), self.spec.model, self.state.port, self.options
        )
        log("starting: " + " ".join(command))
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sys.stdout,
            stderr=sys.stderr,
            cwd=self.paths.directory,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._publish(pid=self.process.pid)
        deadline = time.monotonic() + self.spec.startup_timeout
        while not server_ready(self.spec.backend, self.state.host, self.state.port):
            code = self.process.poll()
            if code is not None:
                raise ServerFailed(
                    f"the {self.spec.backend} server exited with code {code}{exit_hint(code)} "
                    f"while loading {Path(self.spec.model_path).name}; see {self.paths.log}:\n"
                    f"{self._log_tail()}"
                )
            if self.stopping:
                raise ServerFailed("stopped while the server was loading")
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"the {self.spec.backend} server did not answer within "
                    f"{self.spec.startup_timeout:.0f}s; see {self.paths.log}:\n{self._log_tail()}"
                )
            time.sleep(0.25)

    def _stop_server(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.paths.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- watching ----------------------------------------------------------------------

    def _watch(self) -> None:
        idle_since: float | None = time.monotonic()
        users = -1
        while not self.stopping:
            leases = live_leases(self.paths)
            if len(leases) != users:
                users = len(leases)
                who = ", ".join(f"{lease.pid} {lease.label}" for lease in leases) or "none"
                log(f"sessions using it: {users} ({who})")
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                if not leases:
                    log(f"the server exited with code {code}; no session uses it: stopping")
                    return
                if not self._restart(code):
                    return
                continue
            if leases:
                idle_since = None
            else:
                idle_since = idle_since if idle_since is not None else time.monotonic()
                if time.monotonic() - idle_since >= self.spec.idle_timeout and self._stop_if_idle():
                    log(f"no session for {self.spec.idle_timeout:.0f}s: stopping")
                    return
            time.sleep(POLL_SECONDS)

    def _stop_if_idle(self) -> bool:
        """Under the service lock, so that no client takes a lease while we stop."""
        lock = FileLock(self.paths.lock)
        if not lock.try_acquire():
            return False  # a client is starting a session (or stopping us): look again later
        try:
            if live_leases(self.paths):
                return False
            remove_state(self.paths, self.spec.instance)
            self._stop_server()
            return True
        finally:
            lock.release()

    def _restart(self, code: int) -> bool:
        now = time.monotonic()
        self.restart_times = [t for t in self.restart_times if now - t < RESTART_WINDOW_SECONDS]
        if len(self.restart_times) >= RESTARTS_ALLOWED:
            message = (
                f"the server died {RESTARTS_ALLOWED + 1} times in "
                f"{RESTART_WINDOW_SECONDS / 60:.0f} minutes (last exit code {code}"
                f"{exit_hint(code)}); see {self.paths.log}"
            )
            log(message + ": giving up")
            self._publish(status="failed", error=message)
            return False
        self.restart_times.append(now)
        log(f"the server exited with code {code} while sessions use it: starting it again")
        self._publish(status="restarting", restarts=self.state.restarts + 1)
        try:
            self._start_server()
        except ServerFailed as error:
            log(f"restart failed: {error}")
            self._publish(status="failed", error=str(error))
            return False
        self._publish(status="ready", ready_at=time.time())
        return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m kernelagent.localmodel.supervisor SPEC_JSON", file=sys.stderr)
        return 2
    spec = SupervisorSpec.model_validate_json(argv[1])
    detach()
    return Supervisor(spec).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
