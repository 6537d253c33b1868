"""Build the sandbox image, with or without an image registry.

Two routes:

* ``rootfs`` (default): debootstrap a Debian root filesystem from Debian's
  packages, add a non-root user, and ``docker import`` it. Needs root, debootstrap
  and a Debian mirror, but no image registry.
* ``dockerfile``: an ordinary ``docker build`` from a Python base image, for users
  who can pull from a registry.

Images carry a ``kernelagent.recipe`` label, the hash of the recipe that built
them, so ``kernelagent image build`` does nothing when the image is current.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from kernelagent.errors import KernelAgentError

DEFAULT_IMAGE = "kernelagent-sandbox:latest"
SANDBOX_USER = "agent"
SANDBOX_UID = 1000
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = [
    "python3-ipykernel",
    "python3-cffi-backend",  # satisfies python3-zmq's virtual cffi dependency
    "python3-numpy",
    "python3-pandas",
    "python3-matplotlib",
    "python3-scipy",
    "python3-sklearn",
    "fonts-dejavu-core",
    "procps",
    "ca-certificates",
]
DATA_LIBRARIES = ("numpy", "pandas", "matplotlib", "scipy", "scikit-learn")
"""What the sandbox's Python can import for analysis, as the model is told."""
PYPI_PACKAGES = ["ipykernel", *DATA_LIBRARIES]
RECIPE_LABEL = "kernelagent.recipe"
IMAGE_CHANGES = [
    f"USER {SANDBOX_UID}:{SANDBOX_UID}",
    "WORKDIR /workspace",
    "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8",
    'CMD ["python3", "-m", "ipykernel_launcher"]',
]
_PRUNE = [
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
]

Progress = Callable[[str], None]


class ImageBuildError(KernelAgentError, RuntimeError):
    pass


def recipe_hash(route: str, suite: str = DEBIAN_SUITE) -> str:
    parts = (
        [route, suite, *DEBIAN_PACKAGES, *IMAGE_CHANGES]
        if route == "rootfs"
        else [route, dockerfile_text()]
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def image_is_current(client, name: str, route: str = "rootfs") -> bool:
    import docker.errors

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return (image.labels or {}).get(RECIPE_LABEL) == recipe_hash(route)


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses, so the image comes from the same place."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and "security" not in fields[1]:
                return fields[1]
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], progress: Progress, what: str, *, check: bool = True) -> int:
    progress(what)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0 and check:
        tail = "\n".join(result.stdout.splitlines()[-20:])
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.returncode


def build_rootfs_image(
    client,
    name: str = DEFAULT_IMAGE,
    *,
    suite: str = DEBIAN_SUITE,
    mirror: str | None = None,
    progress: Progress = print,
) -> str:
    """debootstrap a Debian rootfs with python3 + ipykernel + the data stack and import it."""
    if os.geteuid() != 0:
        raise ImageBuildError(
            "Building the rootfs image needs root (debootstrap and chroot). Run "
            "`sudo kernelagent image build`, or `kernelagent image build --route dockerfile` "
            "if you can pull base images from a registry."
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: `apt-get install -y debootstrap`.")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="kernelagent-rootfs-") as tmp:
        root = Path(tmp) / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                suite,
                str(root),
                mirror,
            ],
            progress,
            f"debootstrap {suite} from {mirror} (2-3 minutes)",
            check=False,  # a package left unconfigured is finished below
        )
        import_rootfs(root, name, suite=suite, progress=progress)
    progress(f"built {name}")
    return name


def import_rootfs(
    root: Path, name: str, *, suite: str = DEBIAN_SUITE, progress: Progress = print
) -> None:
    """Finish a debootstrapped root (packages left unconfigured, the user) and import it."""
    if not (root / "usr" / "bin" / "python3").exists():
        raise ImageBuildError(f"debootstrap did not produce a usable root filesystem in {root}")
    # debootstrap does not resolve virtual dependencies (python3-zmq's cffi, gdb's
    # boost-regex); apt inside the root finishes what it left unconfigured.
    if Path("/etc/resolv.conf").exists():
        shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    _run(
        ["chroot", str(root), "apt-get", "-f", "install", "-y", "-q"],
        progress,
        "resolving left-over dependencies",
    )
    _run(["chroot", str(root), "dpkg", "--configure", "-a"], progress, "configuring packages")
    _run(
        [
            "chroot",
            str(root),
            "python3",
            "-c",
            "import ipykernel, zmq, numpy, pandas, matplotlib, scipy, sklearn",
        ],
        progress,
        "checking that the kernel and the data stack import",
    )
    if (
        subprocess.run(["chroot", str(root), "id", SANDBOX_USER], capture_output=True).returncode
        != 0
    ):
        _run(
            [
                "chroot",
                str(root),
                "useradd",
                "--uid",
                str(SANDBOX_UID),
                "--user-group",
                "--create-home",
                "--shell",
                "/bin/bash",
                SANDBOX_USER,
            ],
            progress,
            f"adding the non-root user {SANDBOX_USER} ({SANDBOX_UID})",
        )
    (root / "workspace").mkdir(exist_ok=True)
    os.chown(root / "workspace", SANDBOX_UID, SANDBOX_UID)
    (root / "run" / "kernelagent").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "resolv.conf").write_text("")
    for relative in _PRUNE:
        target = root / relative
        if target.exists():
            shutil.rmtree(target)
            target.mkdir()
    progress(f"importing the root filesystem as {name}")
    changes = [*IMAGE_CHANGES, f"LABEL {RECIPE_LABEL}={recipe_hash('rootfs', suite)}"]
    cmd = [
        "docker",
        "import",
        *[arg for change in changes for arg in ("--change", change)],
        "-",
        name,
    ]
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(cmd, stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if imported.returncode != 0:
        raise ImageBuildError(f"docker import failed: {imported.stderr.strip()}")


def dockerfile_text(base: str = "python:3.12-slim") -> str:
    return f"""\
FROM {base}
RUN pip install --no-cache-dir {" ".join(PYPI_PACKAGES)} \\
 && useradd --uid {SANDBOX_UID} --user-group --create-home {SANDBOX_USER} \\
 && mkdir -p /workspace /run/kernelagent && chown {SANDBOX_UID}:{SANDBOX_UID} /workspace
USER {SANDBOX_UID}:{SANDBOX_UID}
WORKDIR /workspace
CMD ["python3", "-m", "ipykernel_launcher"]
"""


def build_dockerfile_image(
    client,
    name: str = DEFAULT_IMAGE,
    *,
    base: str = "python:3.12-slim",
    progress: Progress = print,
) -> str:
    """``docker build`` from a registry base image."""
    import docker.errors

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = dockerfile_text(base).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    progress(f"docker build from {base}")
    try:
        client.images.build(
            fileobj=context,
            custom_context=True,
            tag=name,
            labels={RECIPE_LABEL: recipe_hash("dockerfile")},
            rm=True,
        )
    except docker.errors.BuildError as error:
        raise ImageBuildError(f"docker build failed: {error}") from error
    progress(f"built {name}")
    return name
