"""Fixtures for the adversarial suite.

- ``record``: each test states its attack and expected outcome up front and records
  what it observed before asserting, so a failing row still says what happened.
  The values live in ``request.node.user_properties`` (and so in ``--junitxml``).
- ``sandbox``: a fresh Docker sandbox with the default (strict) settings.
- ``start_sandbox``: starts sandboxes with custom settings; all are shut down after
  the test even when it fails.

Docker tests fail, not skip, when CI=true and Docker is missing (``docker_available``
from ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings

RECORD_KEYS = ("attack", "expected", "observed")


class Record:
    """Attack / expected / observed for one test, mirrored into user_properties."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item
        self.values: dict[str, str] = {key: "" for key in RECORD_KEYS}

    def __call__(
        self,
        attack: str | None = None,
        expected: str | None = None,
        observed: str | None = None,
    ) -> None:
        for key, value in (("attack", attack), ("expected", expected), ("observed", observed)):
            if value is not None:
                self.values[key] = value
        self._sync()

    def observe(self, text: str) -> None:
        """Append to the observed outcome (tests that observe in several steps)."""
        current = self.values["observed"]
        self.values["observed"] = f"{current}; {text}" if current else text
        self._sync()

    def _sync(self) -> None:
        kept = [(k, v) for k, v in self._item.user_properties if k not in RECORD_KEYS]
        kept.extend((key, self.values[key]) for key in RECORD_KEYS)
        self._item.user_properties[:] = kept


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    rec = Record(request.node)
    function = getattr(request.node, "function", None)
    doc = " ".join((getattr(function, "__doc__", None) or "").split())
    if doc:
        rec(attack=doc)
    return rec


@pytest.fixture
async def sandbox(docker_available: None, tmp_path: Path) -> AsyncIterator[Sandbox]:
    box = await Sandbox.start(SandboxSettings(), tmp_path / "workspace")
    try:
        yield box
    finally:
        await box.shutdown()


StartSandbox = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def start_sandbox(docker_available: None, tmp_path: Path) -> AsyncIterator[StartSandbox]:
    started: list[Sandbox] = []

    async def start(workspace: str = "workspace", **settings: Any) -> Sandbox:
        box = await Sandbox.start(SandboxSettings(**settings), tmp_path / workspace)
        started.append(box)
        return box

    try:
        yield start
    finally:
        for box in started:
            await box.shutdown()
