"""The model service with a stand-in server (tests/fake_model_server.py) in place of
llama-server: fixtures and helpers for tests/test_model_service.py and
tests/test_server_local_model.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernelagent import localmodel
from kernelagent.agent.model import Conversation
from kernelagent.agent.models_factory import make_model
from kernelagent.localmodel import service
from kernelagent.localmodel.store import ModelStore

FAKE_SERVER = Path(__file__).with_name("fake_model_server.py")


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelStore]:
    """A models directory of its own, a fake .gguf, and the fake server as llama-server."""
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("KERNELAGENT_MODELS_DIR", str(root))
    binary = tmp_path / "llama-server"
    binary.write_text(f"#!{sys.executable}\n" + FAKE_SERVER.read_text())
    binary.chmod(0o755)
    monkeypatch.setenv("KERNELAGENT_LLAMA_SERVER", str(binary))
    monkeypatch.delenv("KERNELAGENT_MODEL_BACKEND", raising=False)
    monkeypatch.setenv("KERNELAGENT_MODEL_RETRY_DELAY", "0.05")
    (root / "tiny.gguf").write_bytes(b"GGUF" + bytes(60))
    store = ModelStore(root)
    try:
        yield store
    finally:
        service.stop(root=root)


def tiny(store: ModelStore) -> str:
    return str(store.root / "tiny.gguf")


async def lease(
    store: ModelStore, label: str = "test", **options: object
) -> localmodel.LocalModelHandle:
    return await localmodel.start_local_model(tiny(store), store=store, label=label, **options)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def ps(store: ModelStore) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", "model", "ps", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "KERNELAGENT_MODELS_DIR": str(store.root)},
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def chat(base_url: str, text: str = "hi") -> str:
    model = make_model("chat", "tiny", base_url=base_url, stream=True)
    conversation = Conversation(system="s")
    conversation.add_user(text)
    try:
        turn = await model.turn(conversation, [])
    finally:
        await model.aclose()  # type: ignore[attr-defined]
    return turn.text


def most_in_flight(base_url: str) -> int:
    """The most requests the fake server had in flight at once."""
    with urllib.request.urlopen(
        f"{base_url.removesuffix('/v1')}/max_in_flight", timeout=5
    ) as reply:
        return int(json.loads(reply.read())["max_in_flight"])
