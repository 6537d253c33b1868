"""Shared fixtures. Docker tests fail (not skip) when CI=true and Docker is unusable."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kernelagent.sandbox.images import DEFAULT_IMAGE
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from tests.egress_servers import RecordingHTTPServer
from tests.model_service_fixtures import models  # noqa: F401  (a fake model service, any test)
from tests.postgres_fixtures import postgres, store_url  # noqa: F401  (PostgreSQL, both stores)

pytest_plugins = ["tests.container_leaks"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _docker_problem() -> str | None:
    try:
        from kernelagent.sandbox.docker_provisioner import docker_client

        client = docker_client()
    except Exception as error:
        return str(error)
    try:
        client.images.get(DEFAULT_IMAGE)
    except Exception:
        return f"the sandbox image {DEFAULT_IMAGE} is missing: run `kernelagent image build`"
    return None


@pytest.fixture(scope="session")
def docker_available() -> None:
    problem = _docker_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but Docker tests cannot run: {problem}")
    pytest.skip(f"Docker unavailable: {problem}")


@pytest.fixture
def docker_settings(docker_available: None) -> SandboxSettings:
    return SandboxSettings(kind="docker")


@pytest.fixture
async def docker_sandbox(
    docker_settings: SandboxSettings, tmp_path: Path
) -> AsyncIterator[Sandbox]:
    sandbox = await Sandbox.start(docker_settings, tmp_path / "workspace")
    try:
        yield sandbox
    finally:
        await sandbox.shutdown()


@pytest.fixture(params=["docker", "local"])
async def any_sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sandbox]:
    """The same behaviour on both kinds of sandbox."""
    if request.param == "docker":
        request.getfixturevalue("docker_available")
    sandbox = await Sandbox.start(SandboxSettings(kind=request.param), tmp_path / "workspace")
    try:
        yield sandbox
    finally:
        await sandbox.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs Docker (through ``docker_available``, directly or by
    another fixture) ``docker``, so ``-m 'not docker'`` selects the others."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "docker_available" in fixtures or params.get("any_sandbox") == "docker":
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def servers() -> Iterator[tuple[RecordingHTTPServer, RecordingHTTPServer]]:
    """Two HTTP servers on 127.0.0.1: one a test allows egress to, one it does not."""
    allowed, refused = RecordingHTTPServer(), RecordingHTTPServer()
    try:
        yield allowed, refused
    finally:
        allowed.close()
        refused.close()


@pytest.fixture(autouse=True, scope="session")
def isolated_session_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sessions made by the tests go to a temporary store, not the user's."""
    os.environ["KERNELAGENT_HOME"] = str(tmp_path_factory.mktemp("kernelagent-home"))


@pytest.fixture(autouse=True)
def restored_store_environment() -> Iterator[None]:
    """A Jupyter server started in this process exports its store settings to the
    environment (for the sessions it runs); later tests get the suite's own back."""
    names = ("KERNELAGENT_STORE_URL", "KERNELAGENT_HOME")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True, scope="session")
def no_pool_unless_asked() -> None:
    """Sessions start cold in tests, as they did before the pool: a test of the pool turns
    it on for itself (tests/test_pool*.py), so no other test leaves a pool running."""
    os.environ["KERNELAGENT_POOL"] = "0"


@pytest.fixture(autouse=True, scope="session")
def no_learn_turn_unless_asked() -> None:
    """A session's scripted model gets no extra "what I learned" request at its end (the
    scripts predate it); tests of memory turn it on for themselves (test_memory_*.py)."""
    os.environ["KERNELAGENT_LEARN"] = "0"
