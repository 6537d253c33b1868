"""Host files and environment: the host's files, processes and secrets stay out of reach;
only the workspace (and /tmp) is writable.

Host-side canaries are plain files under the test's ``tmp_path``: attacks aim at them,
never at real host files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import probe
from tests.adversarial.conftest import Record, StartSandbox


async def test_etc_shadow_unreadable_and_not_the_hosts(sandbox: Sandbox, record: Record) -> None:
    """Read /etc/shadow"""
    record(expected="PermissionError; the file is the image's own, not the host's")
    out = await probe(
        sandbox,
        """
        import os
        try:
            open('/etc/shadow').read(); out['read'] = 'read'
        except OSError as e:
            out['read'] = f'{type(e).__name__}: {e.strerror}'
        st = os.stat('/etc/shadow')
        out['stat'] = [st.st_size, st.st_mtime_ns, st.st_dev]
        """,
    )
    host = Path("/etc/shadow")
    host_stat = host.stat() if host.exists() else None
    same = host_stat is not None and [host_stat.st_size, host_stat.st_mtime_ns] == out["stat"][:2]
    record(observed=f"open -> {out['read']}; size/mtime equal to the host's: {same}")
    assert out["read"].startswith("PermissionError")
    assert not same


async def test_host_home_not_visible(sandbox: Sandbox, record: Record) -> None:
    """List /root (the host's home as root) and look for the host's files in it"""
    record(expected="PermissionError on the image's empty /root; no host file visible")
    host_names = sorted(os.listdir("/root"))[:20] if os.access("/root", os.R_OK) else []
    out = await probe(
        sandbox,
        f"""
        import os
        try:
            out['listing'] = os.listdir('/root')
        except OSError as e:
            out['listing'] = f'{{type(e).__name__}}: {{e.strerror}}'
        out['visible'] = [n for n in {host_names!r} if os.path.lexists('/root/' + n)]
        out['home'] = os.environ.get('HOME')
        """,
    )
    record(
        observed=f"os.listdir('/root') -> {out['listing']}; host /root entries visible: "
        f"{len(out['visible'])}/{len(host_names)}; $HOME={out['home']}"
    )
    assert out["listing"] == [] or str(out["listing"]).startswith("PermissionError")
    assert out["visible"] == []


async def test_docker_socket_absent(sandbox: Sandbox, record: Record) -> None:
    """Look for the Docker socket and any other unix socket file"""
    record(
        expected="no /var/run/docker.sock (nor containerd's); the only socket files are "
        "the kernel's own ZMQ ipc sockets in /run/kernelagent"
    )
    out = await probe(
        sandbox,
        """
        import os, stat
        out['docker'] = [p for p in ('/var/run/docker.sock', '/run/docker.sock',
                         '/run/containerd/containerd.sock', '/var/run/containerd/containerd.sock')
                         if os.path.lexists(p)]
        sockets = []
        for top in ('/run', '/var', '/tmp', '/dev', '/home', '/workspace', '/etc', '/usr'):
            for root, dirs, files in os.walk(top):
                for name in files:
                    try:
                        if stat.S_ISSOCK(os.lstat(os.path.join(root, name)).st_mode):
                            sockets.append(os.path.join(root, name))
                    except OSError:
                        pass
        out['sockets'] = sorted(sockets)
        """,
        timeout=60,
    )
    foreign = [s for s in out["sockets"] if not s.startswith("/run/kernelagent/ipc-")]
    record(
        observed=f"docker/containerd sockets: {out['docker'] or 'none'}; socket files: "
        f"{len(out['sockets'])}, foreign: {foreign or 'none'}"
    )
    assert out["docker"] == []
    assert foreign == []


async def test_host_processes_invisible(sandbox: Sandbox, record: Record) -> None:
    """List every process and its command line"""
    record(
        expected="only the sandbox's own processes (PID 1 docker-init, the kernel); no host process"
    )
    out = await probe(
        sandbox,
        """
        import glob
        procs = {}
        for d in glob.glob('/proc/[0-9]*'):
            try:
                raw = open(d + '/cmdline', 'rb').read()
                procs[d[6:]] = raw.replace(b'\\0', b' ').decode().strip()
            except OSError:
                pass
        out['procs'] = procs
        """,
    )
    procs: dict[str, str] = out["procs"]
    host_like = [
        cmd for cmd in procs.values() if "pytest" in cmd or "dockerd" in cmd or "containerd" in cmd
    ]
    record(
        observed=f"{len(procs)} processes; PID 1 = {procs.get('1', '?')[:40]!r}; "
        f"host processes seen: {len(host_like)}"
    )
    assert procs.get("1", "").startswith(("/sbin/docker-init", "docker-init", "/dev/init"))
    assert host_like == []
    assert len(procs) < 10


async def test_host_api_key_not_in_sandbox(
    start_sandbox: StartSandbox, record: Record, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Set OPENAI_API_KEY=sk-adversarial-secret on the host, start a sandbox, search every
    process environment, command line and the runtime files inside"""
    record(
        expected="the secret appears in no /proc/*/environ, /proc/*/cmdline, os.environ or runtime "
        "file"
    )
    secret = "sk-adversarial-secret"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    assert os.environ["OPENAI_API_KEY"] == secret
    box = await start_sandbox()
    out = await probe(
        box,
        f"""
        import glob, os
        hits = []
        for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline') + \\
                    glob.glob('/run/kernelagent/*.json') + ['/proc/self/environ']:
            try:
                if {secret.encode()!r} in open(path, 'rb').read():
                    hits.append(path)
            except OSError:
                pass
        out['hits'] = hits
        out['env_keys'] = sorted(os.environ)
        out['in_environ'] = (any({secret!r} in v for v in os.environ.values())
                             or 'OPENAI_API_KEY' in os.environ)
        out['searched'] = len(glob.glob('/proc/[0-9]*/environ'))
        """,
    )
    config_env = box.manager.provisioner._container().attrs["Config"]["Env"]  # type: ignore[union-attr]
    in_config = any(secret in entry for entry in config_env)
    record(
        observed=f"files with the secret: {out['hits'] or 'none'} (searched {out['searched']} "
        f"processes); "
        f"in os.environ: {out['in_environ']}; in the container's Config.Env: {in_config}; "
        f"env keys: {out['env_keys']}"
    )
    assert out["hits"] == []
    assert not out["in_environ"]
    assert not in_config


async def test_only_expected_host_mounts(sandbox: Sandbox, record: Record) -> None:
    """Enumerate mounts that come from the host's disks"""
    record(
        expected="writable host mounts: only /workspace and /run/kernelagent; read-only: "
        "docker-init, /etc/hosts, /etc/hostname, /etc/resolv.conf"
    )
    out = await probe(
        sandbox,
        """
        mounts = []
        for line in open('/proc/self/mountinfo'):
            left, right = line.split(' - ')
            fields = left.split()
            fstype = right.split()[0]
            if fstype in ('overlay', 'proc', 'tmpfs', 'devpts', 'sysfs', 'cgroup', 'cgroup2',
                          'mqueue'):
                continue
            mounts.append([fields[4], fields[5].split(',')[0]])
        out['mounts'] = mounts
        """,
    )
    writable = sorted(point for point, mode in out["mounts"] if mode == "rw")
    read_only = sorted(point for point, mode in out["mounts"] if mode != "rw")
    record(observed=f"writable: {writable}; read-only: {read_only}")
    assert writable == ["/run/kernelagent", "/workspace"]
    assert set(read_only) <= {
        "/usr/sbin/docker-init",
        "/sbin/docker-init",
        "/dev/init",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    }


async def test_write_outside_workspace_fails(sandbox: Sandbox, record: Record) -> None:
    """Create files in /, /usr, /etc, /var, /home, /opt, /run, /sbin"""
    record(
        expected="OSError (read-only file system / permission denied) everywhere; /workspace works"
    )
    out = await probe(
        sandbox,
        """
        import errno
        for d in ('/', '/usr', '/usr/local/bin', '/etc', '/var', '/home', '/opt', '/run', '/sbin'):
            try:
                open(d.rstrip('/') + '/kernelagent-evil', 'w').close()
                out[d] = 'written'
            except OSError as e:
                out[d] = errno.errorcode[e.errno]
        with open('/workspace/ok.txt', 'w') as f:
            f.write('ok')
        """,
    )
    record(observed=", ".join(f"{d}: {r}" for d, r in out.items()) + "; /workspace/ok.txt written")
    assert all(result in ("EROFS", "EACCES", "EPERM") for result in out.values()), out
    assert (sandbox.workspace / "ok.txt").read_text() == "ok"


async def test_tmp_is_a_small_tmpfs(start_sandbox: StartSandbox, record: Record) -> None:
    """Inspect /tmp (the only writable place outside the workspace)"""
    record(expected="/tmp is a tmpfs of the configured size (16m here), nosuid, nodev, noexec")
    box = await start_sandbox(tmpfs_size="16m")
    out = await probe(
        box,
        """
        import os
        for line in open('/proc/self/mountinfo'):
            left, right = line.split(' - ')
            if left.split()[4] == '/tmp':
                out['fstype'] = right.split()[0]
                out['options'] = left.split()[5]
        st = os.statvfs('/tmp')
        out['size_mb'] = st.f_blocks * st.f_frsize / 2**20
        """,
    )
    record(
        observed=f"fstype={out['fstype']}, size={out['size_mb']:.0f} MB, options={out['options']}"
    )
    assert out["fstype"] == "tmpfs"
    assert out["size_mb"] <= 16
    assert {"nosuid", "nodev", "noexec"} <= set(out["options"].split(","))


async def test_workspace_symlink_to_host_file_refused(
    sandbox: Sandbox, record: Record, tmp_path: Path
) -> None:
    """Plant symlinks in the workspace to host paths, then let the host copy files in and out"""
    record(
        expected="inside, the link resolves in the container (host file not there); host-side "
        "get_file/put_file refuse paths that resolve outside the workspace; host canary untouched"
    )
    canary = tmp_path / "host-canary.txt"
    canary.write_text("host data")
    source = tmp_path / "upload.csv"
    source.write_text("a,b\n1,2\n")
    out = await probe(
        sandbox,
        f"""
        import os
        os.symlink({str(canary)!r}, 'leak.txt')
        os.symlink('/', 'rootlink')
        try:
            out['inside'] = open('leak.txt').read()
        except OSError as e:
            out['inside'] = type(e).__name__
        """,
    )
    outcomes = {}
    attempts = {
        "get_file(leak.txt)": lambda: sandbox.get_file("leak.txt", tmp_path / "stolen.txt"),
        "put_file(-> leak.txt)": lambda: sandbox.put_file(source, "leak.txt"),
        "put_file(-> rootlink/etc/evil)": lambda: sandbox.put_file(source, "rootlink/etc/evil"),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            outcomes[name] = "allowed"
        except ValueError:
            outcomes[name] = "ValueError (outside the workspace)"
    record(
        observed=f"reading the link inside -> {out['inside']}; "
        + ", ".join(f"{k} -> {v}" for k, v in outcomes.items())
        + f"; canary {'untouched' if canary.read_text() == 'host data' else 'CHANGED'}"
    )
    assert out["inside"] == "FileNotFoundError"
    assert all(v.startswith("ValueError") for v in outcomes.values())
    assert canary.read_text() == "host data"
    assert not (tmp_path / "stolen.txt").exists()


@pytest.mark.parametrize("planted", ["connection.json", "ipc-1"])
async def test_runtime_dir_symlink_does_not_redirect_host_io(
    planted: str, start_sandbox: StartSandbox, record: Record, tmp_path: Path
) -> None:
    """Replace a connection file in the writable /run/kernelagent with a symlink to a host
    file, then force a restart (a cell that ignores SIGINT past its timeout)"""
    record(
        attack=f"Replace /run/kernelagent/{planted} (the runtime dir is writable by the sandbox) "
        "with a symlink to a host file, then force a restart with a cell that ignores SIGINT",
        expected="the host neither writes nor reads through a link the sandbox planted: the host "
        "canary keeps its content, owner and mode; the kernel restarts and answers",
    )
    canary = tmp_path / f"host-canary-{planted}"
    canary.write_text("host data\n")
    canary.chmod(0o644)
    before = canary.stat()
    box = await start_sandbox(interrupt_grace=1.0, startup_timeout=10)
    out = await probe(
        box,
        f"""
        import os
        path = '/run/kernelagent/{planted}'
        if os.path.lexists(path):
            os.remove(path)
        os.symlink({str(canary)!r}, path)
        out['planted'] = os.readlink(path)
        """,
    )
    record(observed=f"planted {planted} -> {out['planted']}")
    restarted = False
    try:
        result = await box.execute(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
            timeout=1.0,
        )
        record.observe(f"restart: {result.status}, {result.detail!r}")
        restarted = result.interrupt_ignored
    except Exception as error:
        record.observe(f"restart raised {type(error).__name__}: {str(error)[:80]}")
    now = canary.stat()
    content = canary.read_text()
    changed = (
        content != "host data\n" or now.st_uid != before.st_uid or now.st_mode != before.st_mode
    )
    record.observe(
        f"host canary CHANGED: content {content[:32]!r}..., uid {before.st_uid}->{now.st_uid}, "
        f"mode {stat.filemode(before.st_mode)}->{stat.filemode(now.st_mode)}"
        if changed
        else "host canary untouched"
    )
    assert not changed, "the host wrote through a symlink planted by the sandbox"
    assert restarted
    after = await box.execute("1 + 1", timeout=10)
    record.observe(f"after restart: {after.status}")
    assert after.ok
