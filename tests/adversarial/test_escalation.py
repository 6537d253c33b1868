"""Privilege escalation: non-root, no capabilities, no-new-privileges, seccomp."""

from __future__ import annotations

from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import probe
from tests.adversarial.conftest import Record


async def test_setuid_binaries_do_not_give_root(sandbox: Sandbox, record: Record) -> None:
    """Run the image's setuid-root binaries (passwd, su, chsh) and try `su` with a guessed
    password"""
    record(
        expected="no-new-privileges: the setuid bit is ignored, the processes keep uid 1000; su "
        "fails"
    )
    out = await probe(
        sandbox,
        """
        import os, stat, subprocess, time
        out['setuid_present'] = [p for p in ('/usr/bin/passwd', '/usr/bin/su', '/usr/bin/chsh',
                                             '/usr/bin/mount')
                                 if os.path.exists(p) and os.stat(p).st_mode & stat.S_ISUID]
        out['uids'] = {}
        for cmd in (['passwd'], ['su', 'root', '-c', 'id -u'], ['chsh']):
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            time.sleep(0.3)
            try:
                uid = next(l for l in open(f'/proc/{p.pid}/status')
                           if l.startswith('Uid:')).split()[1:]
            except (OSError, StopIteration):
                uid = 'exited'
            out['uids'][cmd[0]] = uid
            p.kill(); p.communicate()
        su = subprocess.run(['su', 'root', '-c', 'id -u'], input=b'root\\n', capture_output=True,
                            timeout=10)
        out['su_rc'] = su.returncode
        out['su_out'] = (su.stdout + su.stderr).decode().strip()
        out['no_new_privs'] = next(l for l in open('/proc/self/status')
                                   if l.startswith('NoNewPrivs')).split()[1]
        out['euid'] = os.geteuid()
        """,
    )
    record(
        observed=f"setuid-root binaries present: {len(out['setuid_present'])}; "
        f"real/effective/saved/fs uid "
        f"while running: {out['uids']}; su with password 'root' -> rc={out['su_rc']} "
        f"({out['su_out'][-40:]!r}); NoNewPrivs={out['no_new_privs']}"
    )
    assert out["euid"] != 0
    assert out["no_new_privs"] == "1"
    for uids in out["uids"].values():
        assert uids == "exited" or "0" not in uids
    assert out["su_rc"] != 0


async def test_mount_fails(sandbox: Sandbox, record: Record) -> None:
    """Mount a tmpfs, remount / read-write, and call mount(2) directly"""
    record(expected="all fail (no CAP_SYS_ADMIN; mount(2) refused)")
    out = await probe(
        sandbox,
        """
        import ctypes, subprocess
        for name, cmd in {'mount -t tmpfs': ['mount', '-t', 'tmpfs', 'none', '/workspace'],
                          'mount -o remount,rw /': ['mount', '-o', 'remount,rw', '/']}.items():
            r = subprocess.run(cmd, capture_output=True, text=True)
            out[name] = f'rc={r.returncode}'
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.mount(b'none', b'/workspace', b'tmpfs', 0, None)
        out['mount(2)'] = f'{rc} errno={ctypes.get_errno()}'
        """,
    )
    record(observed=", ".join(f"{k} -> {v}" for k, v in out.items()))
    assert out["mount -t tmpfs"] != "rc=0" and out["mount -o remount,rw /"] != "rc=0"
    assert out["mount(2)"].startswith("-1")


async def test_user_namespaces_refused(sandbox: Sandbox, record: Record) -> None:
    """`unshare -r`, `unshare --user`, unshare(CLONE_NEWUSER) and nsenter into PID 1's namespaces"""
    record(
        expected="all refused (seccomp blocks unshare/setns without CAP_SYS_ADMIN); nothing gained"
    )
    out = await probe(
        sandbox,
        """
        import ctypes, subprocess
        for cmd in (['unshare', '-r', 'id', '-u'], ['unshare', '--user', 'id', '-u'],
                    ['unshare', '--user', '--map-root-user', '--mount', 'id', '-u'],
                    ['nsenter', '-t', '1', '-m', '-p', 'id', '-u']):
            r = subprocess.run(cmd, capture_output=True, text=True)
            out[' '.join(cmd[:-2])] = f'rc={r.returncode} {(r.stdout + r.stderr).strip()[-45:]}'
        libc = ctypes.CDLL(None, use_errno=True)
        out['unshare(CLONE_NEWUSER)'] = f'{libc.unshare(0x10000000)} errno={ctypes.get_errno()}'
        """,
    )
    record(observed="; ".join(f"{k} -> {v}" for k, v in out.items()))
    for key, value in out.items():
        if key.startswith(("unshare -", "unshare --", "nsenter")):
            assert not value.startswith("rc=0"), (key, value)
    assert out["unshare(CLONE_NEWUSER)"].startswith("-1")


async def test_capabilities_all_zero(sandbox: Sandbox, record: Record) -> None:
    """Read the capability sets from /proc/self/status"""
    record(
        expected="CapInh, CapPrm, CapEff, CapBnd, CapAmb all 0000000000000000; NoNewPrivs 1; "
        "seccomp on"
    )
    out = await probe(
        sandbox,
        """
        for line in open('/proc/self/status'):
            key, _, value = line.partition(':')
            if key.startswith('Cap') or key in ('NoNewPrivs', 'Seccomp'):
                out[key] = value.strip()
        """,
    )
    record(observed=", ".join(f"{k}={v}" for k, v in out.items()))
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert out[key] == "0000000000000000", key
    assert out["NoNewPrivs"] == "1"
    assert out["Seccomp"] == "2"


async def test_proc_sys_and_sys_writes_fail(sandbox: Sandbox, record: Record) -> None:
    """Write kernel tunables (/proc/sys), sysfs, sysrq and the container's own cgroup limits"""
    record(
        expected="every write fails (read-only /proc/sys, /sys and cgroup mounts); limits unchanged"
    )
    out = await probe(
        sandbox,
        """
        import errno, glob
        targets = ['/proc/sys/kernel/core_pattern', '/proc/sys/vm/overcommit_memory',
                   '/proc/sys/kernel/panic', '/proc/sysrq-trigger', '/sys/kernel/mm/ksm/run',
                   '/sys/kernel/uevent_helper']
        targets += glob.glob('/sys/fs/cgroup/memory/memory.limit_in_bytes')
        targets += glob.glob('/sys/fs/cgroup/pids/pids.max')
        targets += glob.glob('/sys/fs/cgroup/memory.max')
        for path in targets:
            try:
                with open(path, 'w') as f:
                    f.write('1' if 'cgroup' not in path else 'max')
                out[path] = 'written'
            except OSError as e:
                out[path] = errno.errorcode.get(e.errno, str(e.errno))
        """,
    )
    record(observed=", ".join(f"{k}: {v}" for k, v in out.items()))
    assert out and all(v != "written" for v in out.values()), out


async def test_ptrace_is_contained(sandbox: Sandbox, record: Record) -> None:
    """PTRACE_ATTACH (ctypes) to PID 1 (docker-init, which then stops) and to a sibling"""
    record(
        expected="ptrace works only between the sandbox's own uid-1000 processes (Docker's "
        "default seccomp allows it on kernels >= 4.8; accepted, see the threat model): only "
        "the container's processes are visible, and a stopped docker-init cannot keep the "
        "sandbox from being controlled: the next timeout escalates to a restart that works"
    )
    out = await probe(
        sandbox,
        """
        import ctypes, os, subprocess, time
        libc = ctypes.CDLL(None, use_errno=True)
        PTRACE_ATTACH = 16
        def attach(pid):
            ctypes.set_errno(0)
            rc = libc.ptrace(PTRACE_ATTACH, pid, None, None)
            return {'rc': rc, 'errno': ctypes.get_errno()}
        out['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
        sibling = subprocess.Popen(['sleep', '30'])
        out['sibling'] = attach(sibling.pid)
        sibling.kill()
        out['pid1'] = attach(1)  # docker-init is now stopped under our trace
        """,
    )
    stopped_init = await sandbox.execute("import time\ntime.sleep(60)", timeout=2)
    after = await sandbox.execute("6 * 7")
    record(
        observed=f"visible pids {out['pids']}; PTRACE_ATTACH sibling rc={out['sibling']['rc']}, "
        f"pid 1 rc={out['pid1']['rc']}; next long cell: {stopped_init.status} "
        f"({stopped_init.detail}); "
        f"then 6*7 -> {after.outputs[0]['data']['text/plain'] if after.ok else after.status}"
    )
    assert len(out["pids"]) <= 4, out["pids"]  # docker-init, the kernel, its children: no host pids
    assert stopped_init.status == "timeout"
    assert after.ok and after.outputs[0]["data"]["text/plain"] == "42"


X86_64 = {
    "open_by_handle_at": 304,
    "bpf": 321,
    "perf_event_open": 298,
    "keyctl": 250,
    "add_key": 248,
    "userfaultfd": 323,
    "kexec_load": 246,
    "init_module": 175,
    "setns": 308,
    "pivot_root": 155,
    "swapon": 167,
    "reboot": 169,
}
AARCH64 = {
    "open_by_handle_at": 265,
    "bpf": 280,
    "perf_event_open": 241,
    "keyctl": 219,
    "add_key": 217,
    "userfaultfd": 282,
    "kexec_load": 104,
    "init_module": 105,
    "setns": 268,
    "pivot_root": 41,
    "swapon": 224,
    "reboot": 142,
}


async def test_dangerous_syscalls_blocked(sandbox: Sandbox, record: Record) -> None:
    """Call syscalls behind known container escapes (open_by_handle_at "shocker", bpf, keyctl,
    ...)"""
    record(expected="each returns -1 with EPERM (seccomp / no capabilities)")
    out = await probe(
        sandbox,
        f"""
        import ctypes, errno, platform
        table = {X86_64!r} if platform.machine() == 'x86_64' else {AARCH64!r}
        libc = ctypes.CDLL(None, use_errno=True)
        for name, number in table.items():
            ctypes.set_errno(0)
            rc = libc.syscall(number, 0, 0, 0, 0, 0)
            out[name] = f'{{rc}} {{errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())}}'
        """,
    )
    record(observed=", ".join(f"{k} -> {v}" for k, v in out.items()))
    assert all(value.startswith("-1 ") for value in out.values()), out


async def test_device_nodes_unavailable(sandbox: Sandbox, record: Record) -> None:
    """Create /dev/mem-like device nodes with mknod; look for raw disks, /dev/mem, /dev/kmsg"""
    record(expected="mknod fails (no CAP_MKNOD); only the minimal /dev set exists")
    out = await probe(
        sandbox,
        """
        import os
        try:
            os.mknod('/tmp/mem', 0o600 | 0o020000, os.makedev(1, 1)); out['mknod'] = 'created'
        except OSError as e:
            out['mknod'] = f'{type(e).__name__}: {e.strerror}'
        out['present'] = [d for d in ('/dev/mem', '/dev/kmem', '/dev/kmsg', '/dev/port', '/dev/sda',
                                      '/dev/vda',
                                      '/dev/nvme0n1', '/dev/fuse', '/dev/kvm') if os.path.exists(d)]
        out['dev'] = sorted(os.listdir('/dev'))
        """,
    )
    record(
        observed=f"mknod -> {out['mknod']}; sensitive devices present: {out['present'] or 'none'}; "
        f"/dev = {out['dev']}"
    )
    assert out["mknod"].startswith("PermissionError")
    assert out["present"] == []
