"""``kernelagent model install-server``: build llama.cpp's ``llama-server`` once.

llama.cpp's sources ship inside the llama-cpp-python sdist on PyPI
(``vendor/llama.cpp``), so no other download is needed::

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
    cmake -S vendor/llama.cpp -B build -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF ...
    cmake --build build --target llama-server -j N

The binary is linked statically and installed as ``<models dir>/llama-server/bin/llama-server``
(with ``install.json``: version, when, the cmake options); the build log stays beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from kernelagent.localmodel.backends import llama_server_install_dir, llama_server_version
from kernelagent.localmodel.service_files import FileLock
from kernelagent.localmodel.store import LocalModelError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The sdist whose vendored llama.cpp is built (the version tried on these machines)."""
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else the build downloads a web UI from a model hub
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary to install
)
#: x86 instruction sets llama.cpp's CPU code is compiled for when this CPU has them.
#: Not GGML_NATIVE (-march=native): in VMs that advertise AVX-512/AMX it builds a binary
#: that dies with SIGILL (as it did here); AVX2-class code is what these machines run.
X86_FEATURES = (
    ("sse4_2", "GGML_SSE42"),
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("bmi2", "GGML_BMI2"),
)
TOOLS_HINT = "on Debian: apt-get install -y cmake g++ (or: pip install cmake)"

Stage = Literal["download", "unpack", "configure", "build", "install", "done"]


class ServerBuildError(LocalModelError):
    """The build of llama-server failed; the message names its log."""


@dataclass(frozen=True)
class BuildProgress:
    stage: Stage
    percent: int | None = None
    """Of the compile step, from cmake's ``[ NN%]`` lines."""


BuildCallback = Callable[[BuildProgress], None]


def _no_progress(_: BuildProgress) -> None:
    return None


def installed_version(root: Path | None = None) -> dict[str, str] | None:
    """What ``install.json`` says about the installed build, or None."""
    try:
        data = json.loads((llama_server_install_dir(root) / "install.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cpu_options(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """cmake options for the CPU code: on x86-64 the instruction sets this CPU has (up to
    AVX2); elsewhere llama.cpp's own detection (-march=native)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    try:
        flags_line = next(
            line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
        )
    except (OSError, StopIteration):
        flags_line = ""
    flags = set(flags_line.partition(":")[2].split())
    return ["-DGGML_NATIVE=OFF"] + [
        f"-D{option}={'ON' if flag in flags else 'OFF'}" for flag, option in X86_FEATURES
    ]


def find_build_tools() -> tuple[str, str]:
    """cmake and a C++ compiler, or an error that says how to install them."""
    cmake = shutil.which("cmake")
    compiler = next(
        (found for name in ("c++", "g++", "clang++") if (found := shutil.which(name))), None
    )
    missing = [
        name for name, found in (("cmake", cmake), ("a C++ compiler", compiler)) if not found
    ]
    if missing:
        raise ServerBuildError(f"building llama-server needs {' and '.join(missing)}: {TOOLS_HINT}")
    assert cmake is not None and compiler is not None
    return cmake, compiler


def install_llama_server(
    root: Path | None = None,
    *,
    jobs: int | None = None,
    force: bool = False,
    source: Path | None = None,
    progress: BuildCallback | None = None,
) -> Path:
    """Build and install llama-server (skipped when a working one is installed, unless
    ``force``); returns the binary. ``source``: an sdist (.tar.gz) or an unpacked sdist
    directory to build instead of downloading one. Takes ~5-8 minutes on 2 cores."""
    report = progress or _no_progress
    target = llama_server_install_dir(root)
    binary = target / "bin" / "llama-server"
    target.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target / ".install.lock")
    lock.acquire(3600, "building llama-server")  # a second install waits for the first
    try:
        if binary.is_file() and not force:
            with contextlib.suppress(LocalModelError):
                llama_server_version(binary)
                report(BuildProgress("done", 100))
                return binary
        cmake, _compiler = find_build_tools()
        log_path = target / "build.log"
        with (
            tempfile.TemporaryDirectory(prefix="build-", dir=target) as work,
            log_path.open("w") as log,
        ):
            tree = _source_tree(Path(work), source, report)
            build_dir = Path(work) / "build"
            report(BuildProgress("configure"))
            options = [*CMAKE_OPTIONS, *cpu_options()]
            _run(
                [cmake, "-S", str(tree / "vendor" / "llama.cpp"), "-B", str(build_dir), *options],
                log,
                log_path,
            )
            report(BuildProgress("build", 0))
            command = [
                cmake,
                "--build",
                str(build_dir),
                "--target",
                "llama-server",
                "-j",
                str(jobs or os.cpu_count() or 2),
            ]
            for line in _run_lines(command, log, log_path):
                if (match := re.match(r"\[\s*(\d+)%\]", line)) is not None:
                    report(BuildProgress("build", int(match.group(1))))
            report(BuildProgress("install"))
            _install(build_dir / "bin" / "llama-server", binary)
        version = llama_server_version(binary)
        (target / "install.json").write_text(
            json.dumps(
                {
                    "version": version,
                    "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION if source is None else str(source),
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "cmake_options": " ".join([*CMAKE_OPTIONS, *cpu_options()]),
                },
                indent=1,
            )
        )
        report(BuildProgress("done", 100))
        return binary
    finally:
        lock.release()


def _source_tree(work: Path, source: Path | None, report: BuildCallback) -> Path:
    if source is not None and source.is_dir():
        if not (source / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
            raise ServerBuildError(
                f"{source} is not an unpacked llama-cpp-python sdist (no vendor/llama.cpp)"
            )
        return source
    sdist = source if source is not None else _download_sdist(work, report)
    report(BuildProgress("unpack"))
    with tarfile.open(sdist) as archive:
        if sys.version_info >= (3, 12):
            archive.extractall(work / "src", filter="data")
        else:  # pragma: no cover (3.10, 3.11)
            archive.extractall(work / "src")
    trees = [path for path in (work / "src").iterdir() if (path / "vendor" / "llama.cpp").is_dir()]
    if len(trees) != 1:
        raise ServerBuildError(f"{sdist.name} has no vendor/llama.cpp: the sdist layout changed")
    return trees[0]


def _download_sdist(work: Path, report: BuildCallback) -> Path:
    report(BuildProgress("download"))
    dest = work / "sdist"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz")) if dest.is_dir() else []
    if not found:  # pip may fail to prepare metadata after the download: the file is enough
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ServerBuildError(
            f"pip could not download the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist:\n"
            f"{tail}\nCheck that PyPI (or your PIP_INDEX_URL mirror) is reachable, or pass "
            "--source with a downloaded sdist."
        )
    return found[0]


def _run(command: list[str], log: TextIO, log_path: Path) -> None:
    for _line in _run_lines(command, log, log_path):
        pass


def _run_lines(command: list[str], log: TextIO, log_path: Path) -> Iterator[str]:
    log.write("$ " + " ".join(command) + "\n")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            log.write(line)
            log.flush()  # `tail -f` the log while it builds
            yield line
    finally:
        code = process.wait()
        log.flush()
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise ServerBuildError(
            f"`{' '.join(command[:3])} ...` failed with code {code}; see {log_path}:\n{tail}"
        )


def _install(built: Path, binary: Path) -> None:
    if not built.is_file():
        raise ServerBuildError(f"the build finished but {built} is missing: see the build log")
    binary.parent.mkdir(parents=True, exist_ok=True)
    temp = binary.with_name(".llama-server.tmp")
    shutil.copy2(built, temp)
    temp.chmod(0o755)
    os.replace(temp, binary)  # a running server keeps its (old) file
