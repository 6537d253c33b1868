"""A pytest plugin: the suite leaves no sandbox container behind.

At the start it notes the kernelagent containers that exist; at the end (after every
fixture's teardown) it lists and removes each new one that is stopped, or whose owner
process is this pytest or gone. A running one may be the kept sandbox of a session a test
left paused (a paused session keeps its kernel to re-attach to); a stopped one is of no
use to anyone, so with ``KERNELAGENT_FAIL_ON_LEAKS=1`` a stopped one fails the run (CI
turns it on once a CI run has shown none). Containers owned by other live processes (a
benchmark beside the tests) are not ours.
"""

from __future__ import annotations

import os

import pytest

from kernelagent.machine_files import pid_alive

FAIL_ON_LEAKS = "KERNELAGENT_FAIL_ON_LEAKS"
_before: set[str] | None = None


def _containers() -> list:
    from kernelagent.sandbox.docker_provisioner import LABEL_MANAGED, docker_client

    return docker_client().containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=1"})


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before
    try:
        _before = {container.id for container in _containers()}
    except Exception:  # no Docker here: nothing to check
        _before = None


def _left_behind() -> list:
    from kernelagent.sandbox.docker_provisioner import LABEL_OWNER_PID

    assert _before is not None
    left = []
    for container in _containers():
        if container.id in _before:
            continue
        owner = container.labels.get(LABEL_OWNER_PID, "")
        owner_pid = int(owner) if owner.isdigit() else None
        stopped = container.status != "running"
        if stopped or owner_pid == os.getpid() or not pid_alive(owner_pid):
            left.append(container)
    return left


@pytest.hookimpl(trylast=True)  # after the runner's teardown of session fixtures
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _before is None or session.config.option.collectonly:
        return
    try:
        left = _left_behind()
    except Exception:  # Docker went away (a fault test stops it): nothing to check
        return
    if not left:
        return
    from kernelagent.sandbox.docker_provisioner import LABEL_WORKSPACE

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stopped = [c for c in left if c.status != "running"]
    lines = [
        f"{len(left)} sandbox container(s) left behind by the tests, {len(stopped)} of them "
        "stopped (removed now):"
    ]
    lines += [f"  {c.name} ({c.status}) {c.labels.get(LABEL_WORKSPACE, '')}" for c in left]
    for container in left:
        try:
            container.remove(force=True)
        except Exception as error:
            lines.append(f"  could not remove {container.name}: {error}")
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line, red=True)
    if os.environ.get(FAIL_ON_LEAKS) == "1" and stopped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
