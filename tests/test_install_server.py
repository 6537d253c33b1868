"""``kernelagent model install-server`` with real cmake and a real compiler, on a small
stand-in for the llama-cpp-python sdist (the real build takes minutes; it runs in
``scripts/setup.sh``, and the real-model tests use what it built)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kernelagent.localmodel import build
from kernelagent.localmodel.backends import installed_llama_server, llama_server_version
from kernelagent.localmodel.build import BuildProgress, ServerBuildError, install_llama_server

CMAKELISTS = """
cmake_minimum_required(VERSION 3.14)
project(fake_llama CXX)
add_executable(llama-server main.cpp)
set_target_properties(llama-server PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
"""
MAIN = """
#include <cstdio>
#include <cstring>
int main(int argc, char **argv) {
    if (argc > 1 && std::strcmp(argv[1], "--version") == 0) {
        std::puts("version: 4242 (fake)");
        return 0;
    }
    return 1;
}
"""


def fake_sdist(directory: Path) -> Path:
    """An unpacked sdist: ``<dir>/vendor/llama.cpp`` with a CMake project for llama-server."""
    tree = directory / "llama_cpp_python-0.0.0"
    source = tree / "vendor" / "llama.cpp"
    source.mkdir(parents=True)
    (source / "CMakeLists.txt").write_text(CMAKELISTS)
    (source / "main.cpp").write_text(MAIN)
    return tree


@pytest.fixture
def tools() -> None:
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(
                "CI=true but cmake or c++ is missing: bash scripts/setup.sh --test installs them"
            )
        pytest.skip("cmake or c++ is missing")


def test_builds_installs_and_reports_progress(
    tools: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KERNELAGENT_LLAMA_SERVER", raising=False)
    source = fake_sdist(tmp_path / "src")
    events: list[BuildProgress] = []
    binary = install_llama_server(
        tmp_path / "models", source=source, progress=events.append, jobs=2
    )
    assert binary == tmp_path / "models" / "llama-server" / "bin" / "llama-server"
    assert llama_server_version(binary) == "version: 4242 (fake)"
    assert installed_llama_server(tmp_path / "models") == binary
    stages = [event.stage for event in events]
    assert stages[0] == "configure" and stages[-1] == "done" and "install" in stages
    assert any(event.stage == "build" and event.percent == 100 for event in events)
    info = build.installed_version(tmp_path / "models")
    assert info is not None and info["version"] == "version: 4242 (fake)"
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in info["cmake_options"]  # nothing is downloaded by cmake
    assert "$ " in (tmp_path / "models" / "llama-server" / "build.log").read_text()
    assert not list((tmp_path / "models" / "llama-server").glob("build-*"))  # the tree is gone

    again: list[BuildProgress] = []
    assert install_llama_server(tmp_path / "models", source=source, progress=again.append) == binary
    assert [event.stage for event in again] == ["done"]  # already installed: no build


def test_builds_from_an_sdist_archive_through_the_cli(tools: None, tmp_path: Path) -> None:
    tree = fake_sdist(tmp_path / "src")
    archive = tmp_path / "llama_cpp_python-0.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernelagent.cli",
            "model",
            "install-server",
            "--source",
            str(archive),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "KERNELAGENT_MODELS_DIR": str(tmp_path / "models")},
    )
    assert done.returncode == 0, done.stderr
    assert "installed" in done.stderr and "version: 4242 (fake)" in done.stderr


def test_a_failing_build_names_its_log(tools: None, tmp_path: Path) -> None:
    tree = fake_sdist(tmp_path / "src")
    (tree / "vendor" / "llama.cpp" / "main.cpp").write_text("this is not C++")
    with pytest.raises(ServerBuildError, match=r"(?s)failed with code.*build.log"):
        install_llama_server(tmp_path / "models", source=tree)
    assert not (tmp_path / "models" / "llama-server" / "bin" / "llama-server").exists()


def test_missing_tools_say_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(
        ServerBuildError, match=r"needs cmake and a C\+\+ compiler: on Debian: apt-get install"
    ):
        install_llama_server(tmp_path / "models", source=fake_sdist(tmp_path / "src"))


def test_cpu_options_never_ask_for_native_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f amx_tile\n")
    options = build.cpu_options(cpuinfo)
    assert options[0] == "-DGGML_NATIVE=OFF" and "-DGGML_AVX2=ON" in options
    assert "-DGGML_BMI2=OFF" in options and not any("AVX512" in option for option in options)
