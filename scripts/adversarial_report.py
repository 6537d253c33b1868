"""Run the adversarial suite and write ``tests/adversarial/results.md``.

    python scripts/adversarial_report.py                  # run the suite, write the table
    python scripts/adversarial_report.py --results X.jsonl  # only render collected results
    python scripts/adversarial_report.py -- -k network    # extra pytest arguments after --

Each test records its attack, expected outcome and observed outcome (the ``record``
fixture in ``tests/adversarial/conftest.py`` stores them in the test's
``user_properties``). This module is also a small pytest plugin (``-p
adversarial_report``): it writes every test report, with those properties, as one JSON
line. The script then renders one Markdown table below the threat model. The exit
status is pytest's: non-zero when any row is FAIL (an attack succeeded) or ERROR.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "adversarial"
OUTPUT = SUITE / "results.md"
RESULTS_ENV = "KERNELAGENT_ADVERSARIAL_RESULTS"

AREAS = {
    "test_host_faults": "host faults",
    "test_network": "network",
    "test_egress": "egress allowlist",
    "test_filesystem": "host files / env",
    "test_escalation": "privileges",
    "test_resources": "resources",
    "test_kernel_faults": "kernel faults",
    "test_input": "input",
    "test_jupyter_route": "Jupyter route",
    "test_server_policy": "server API",
}


# -- the pytest plugin (loaded in the pytest process with ``-p adversarial_report``) --------


def pytest_runtest_logreport(report: Any) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    message = ""
    if report.failed or report.skipped:
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            message = crash.message
        elif isinstance(report.longrepr, tuple):  # skip: (file, line, reason)
            message = str(report.longrepr[-1])
        else:
            message = str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""
    line = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": report.duration,
        "properties": {str(k): str(v) for k, v in report.user_properties},
        "message": message,
    }
    with open(path, "a", encoding="utf-8") as results:
        results.write(json.dumps(line) + "\n")


# -- the report ---------------------------------------------------------------------------

THREAT_MODEL = """\
## Threat model

The code in a kernel is written by a model and is **untrusted**: it may be wrong,
prompt-injected or hostile. Every kernel runs in its own Docker container
(`kernelagent/sandbox/docker_provisioner.py`, `DockerProvisioner.container_options`):
`network_mode=none`, a non-root user (uid 1000, or the host user's uid), `cap_drop=ALL`,
`no-new-privileges`, Docker's default seccomp profile, a read-only root filesystem, a
small `nosuid,nodev,noexec` tmpfs on `/tmp`, memory (no swap), CPU and PID limits, a
private IPC namespace, `docker-init` as PID 1, and a fixed environment with nothing from
the host. The host keeps at most `output_limit` bytes of output per cell. The table below
attacks each of these from inside, through `Sandbox.execute` (the path the agent uses).

**What the container stops**

- *Network*: the only interface is `lo`; nothing on the host (TCP on 127.0.0.1, abstract
  unix sockets) or beyond is reachable, names do not resolve, raw sockets are refused.
- *Egress by allowlist* (`--allow-net HOST[:PORT]`): the container still has no interface.
  A host-side HTTP/CONNECT proxy, reached through a unix socket mounted read-only, is the
  only way out: it resolves names on the host, connects only to listed destinations (IP
  literals and names resolving to private, loopback or link-local addresses need an
  explicit rule), answers everything else with a 403 that names the destination, and
  records every request (method, host:port, bytes, time, decision) in the session's egress
  log and the cell's `metadata.kernelagent.egress`. Secret headers it adds never enter the
  sandbox. If the proxy dies, the sandbox has no way out at all (fails closed).
- *Host files and secrets*: only the workspace (read-write) and the kernel's runtime
  directory (ZMQ sockets and connection file) are host directories in the container;
  `/etc/shadow` and `/root` are the image's own; no Docker socket; host processes are
  invisible (PID namespace); host environment variables such as `OPENAI_API_KEY` never
  enter the container.
- *Privileges*: no capabilities, setuid binaries do not elevate (`no-new-privileges`),
  `mount`, user namespaces, `setns` and the syscalls behind known escapes
  (`open_by_handle_at`, `bpf`, `keyctl`, `kexec_load`, module loading, ...) are refused;
  `/proc/sys`, `/sys` and the cgroup limits are read-only.
- *Resource exhaustion*: fork bombs stop at the PID limit, memory bombs are OOM-killed
  and reported as such, `/tmp` and `/dev/shm` fill up at their size, output floods are
  capped on the host, hung or crashed kernels are reported (timeout, restart, exit code,
  signal) and other sessions keep working.

**Around the sandbox**

- *The server API*: a request cannot send the server's API key to an endpoint it chose
  (only the server's own base URL gets it; others must be in `allowed_base_urls` and get no
  key unless listed so), cannot ask for the unisolated `local` sandbox or for egress beyond
  `request_network_allow`, and error replies carry no internal detail.
- *The Jupyter route*: recorded session notebooks name the sandbox kernelspec, so "Run All"
  in JupyterLab runs in a container, and replay always uses the sandbox. When the host runs
  as root, a kernelspec kernel runs as the notebook directory's owner, or as uid 1000 with
  one ACL entry on that directory when root owns it; it is never root.

**What it cannot stop**

- *What an allowed destination is used for*: data can leave to any destination the
  allowlist names (the audit shows how much). A CONNECT tunnel is opaque, so a TLS client can
  ask a shared front end (a CDN edge that also serves the allowed name) for another site
  (domain fronting); list destinations with their own addresses when this matters.

- *Kernel exploits*: containers share the host's Linux kernel. A kernel vulnerability
  reachable through the syscalls seccomp allows is a host compromise. Keep the host
  kernel patched, or use gVisor (below).
- *ptrace inside the sandbox*: Docker's default seccomp profile allows ptrace on kernels
  >= 4.8, so the sandbox's processes (all uid 1000) can trace each other, including
  docker-init. Nothing outside the container is visible to trace; a stopped docker-init
  only breaks interrupt forwarding, and the next timeout escalates to a restart. A custom
  seccomp profile without ptrace would close it; not done, as it would replace Docker's
  maintained default profile.
- *Side channels*: timing, cache and speculative-execution attacks (Spectre-class) across
  the shared CPU and kernel are not addressed.
- *Disk use of the workspace*: the workspace is a bind-mounted host directory with **no
  quota**; the sandbox can fill the host filesystem it lives on. Put workspaces on a
  dedicated filesystem or a quota-enabled volume when this matters.
- *A compromised Docker daemon*: whoever controls `dockerd` (or can reach its socket)
  is root on the host; the sandbox relies on the daemon being trusted and unreachable
  from inside (it is: no socket, no network).
- *Host identity of the sandbox user*: there is no user-namespace remapping, so the
  sandbox's uid is a host uid (1000 when the host runs as root, which on many hosts is
  the first login user): files the sandbox writes in the workspace belong to that user.
- *What the host does with sandbox output*: files the sandbox writes into the workspace
  and messages it sends over ZMQ are attacker-controlled data; host code that reads them
  must treat them as such.

**gVisor (optional).** When `runsc` is installed and registered with Docker, run kernels
under it with `SandboxSettings(runtime="runsc")` (kernelspec `runtime`): gVisor
implements the Linux syscall interface in a user-space kernel, so a host-kernel
vulnerability is no longer directly reachable from the sandbox, at some cost in syscall
and I/O speed.
"""


@dataclass
class Row:
    area: str
    name: str
    attack: str
    expected: str
    observed: str
    outcome: str  # PASS / FAIL / ERROR / SKIP
    seconds: float


def run_suite(results: Path, extra: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE.relative_to(ROOT)),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "adversarial_report",
        *extra,
    ]
    env = dict(os.environ)
    env[RESULTS_ENV] = str(results)
    scripts = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts, env.get("PYTHONPATH", "")) if p)
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def parse(results: Path) -> list[Row]:
    """One row per test, in run order, grouped by area."""
    tests: dict[str, dict[str, Any]] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        report = json.loads(line)
        test = tests.setdefault(
            report["nodeid"], {"properties": {}, "outcome": "PASS", "message": "", "seconds": 0.0}
        )
        test["properties"].update(report["properties"])
        test["seconds"] += report["duration"]
        if report["outcome"] == "failed" and test["outcome"] in ("PASS", "SKIP"):
            test["outcome"] = "FAIL" if report["when"] == "call" else "ERROR"
            test["message"] = report["message"]
        elif report["outcome"] == "skipped" and test["outcome"] == "PASS":
            test["outcome"] = "SKIP"
            test["message"] = report["message"]
    rows = []
    for nodeid, test in tests.items():
        module = Path(nodeid.split("::")[0]).stem
        props = test["properties"]
        observed = props.get("observed", "")
        if test["outcome"] != "PASS" and test["message"]:
            first = test["message"].strip().splitlines()[0]
            observed = f"{observed} — {first}" if observed else first
        rows.append(
            Row(
                area=AREAS.get(module, module),
                name=nodeid.split("::", 1)[-1],
                attack=props.get("attack") or nodeid.split("::", 1)[-1],
                expected=props.get("expected", ""),
                observed=observed,
                outcome=test["outcome"],
                seconds=test["seconds"],
            )
        )
    order = list(AREAS.values())
    rows.sort(key=lambda r: order.index(r.area) if r.area in order else len(order))  # stable
    return rows


def cell(text: str) -> str:
    """One Markdown table cell: no pipes, newlines or raw HTML; control chars made visible."""
    text = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").strip()


def docker_facts() -> str:
    try:
        from kernelagent.sandbox.docker_provisioner import docker_client

        info = docker_client().info()
    except Exception as error:
        return f"Docker: unavailable ({type(error).__name__})"
    runtimes = ", ".join(sorted(info.get("Runtimes", {})))
    return (
        f"Docker {info.get('ServerVersion')} (default runtime `{info.get('DefaultRuntime')}`; "
        f"runtimes: {runtimes}; gVisor `runsc` "
        f"{'installed' if 'runsc' in info.get('Runtimes', {}) else 'not installed'}), "
        f"cgroup v{info.get('CgroupVersion', '?')}, host kernel {info.get('KernelVersion')}, "
        f"{info.get('NCPU')} CPUs"
    )


def render(rows: list[Row], seconds: float) -> str:
    passed = sum(r.outcome == "PASS" for r in rows)
    lines = [
        "# Adversarial tests: results",
        "",
        (
            "Generated by `python scripts/adversarial_report.py` from `tests/adversarial/` "
            "(do not edit by hand)."
        ),
        "",
        THREAT_MODEL,
        "## Results",
        "",
        (
            f"{passed}/{len(rows)} passed in {seconds:.0f} s on "
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d} — {docker_facts()}; "
            f"Python {platform.python_version()}."
        ),
        "",
        (
            "A row passes when the attack fails (or, for faults, is contained and reported) as "
            "expected. Observed outcomes are what the test measured in this run."
        ),
        "",
        "| area | attack / fault | expected outcome | observed outcome | result |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = {"PASS": "✅ pass", "FAIL": "❌ FAIL", "ERROR": "❌ ERROR", "SKIP": "⚠️ skipped"}
        lines.append(
            f"| {cell(row.area)} | {cell(row.attack)} | {cell(row.expected)} | "
            f"{cell(row.observed)} | {verdict[row.outcome]} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="render these collected results (JSON lines) instead of running",
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT.relative_to(ROOT)}"
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    started = time.monotonic()
    if args.results:
        code, results = 0, args.results
    else:
        handle, name = tempfile.mkstemp(prefix="adversarial-", suffix=".jsonl")
        os.close(handle)
        results = Path(name)
        code = run_suite(results, args.pytest_args)
    try:
        rows = parse(results)
    finally:
        if not args.results:
            results.unlink(missing_ok=True)
    seconds = sum(r.seconds for r in rows) if args.results else time.monotonic() - started
    if not rows:
        print("no test results: nothing written", file=sys.stderr)
        return code or 1
    args.output.write_text(render(rows, seconds), encoding="utf-8")
    bad = [r for r in rows if r.outcome in ("FAIL", "ERROR")]
    print(f"wrote {args.output} ({len(rows)} rows, {len(bad)} failing)")
    for row in bad:
        print(f"  {row.outcome}: {row.name}: {row.observed[:300]}")
    return code if code else (1 if bad else 0)


if __name__ == "__main__":
    raise SystemExit(main())
