"""Kernel faults: hangs, crashes, exits, signals and forged protocol messages.

Each one must come back as a result that says what happened, never as a hang or an
exception in the host process.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import container_attrs, short
from tests.adversarial.conftest import Record, StartSandbox


async def test_infinite_loop_ignoring_sigint_is_restarted(
    start_sandbox: StartSandbox, record: Record
) -> None:
    """`signal.signal(SIGINT, SIG_IGN)` then `while True: pass`"""
    record(
        expected="timeout -> interrupt ignored -> kernel restarted; result says so "
        "(status=timeout, interrupt_ignored, 'restarted' in detail); the new kernel works, state "
        "lost"
    )
    box = await start_sandbox(interrupt_grace=1.0)
    await box.execute("kept = 1")
    result = await box.execute(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        timeout=1.5,
    )
    after = await box.execute("'kept' in dir(), 1 + 1", timeout=20)
    value = after.outputs[0]["data"]["text/plain"] if after.ok and after.outputs else None
    record(
        observed=f"{short(result)}, interrupt_ignored={result.interrupt_ignored}; next cell -> "
        f"{value}"
    )
    assert result.status == "timeout" and result.interrupt_ignored
    assert "restarted" in result.detail
    assert value == "(False, 2)"


async def test_cell_that_never_yields_times_out(sandbox: Sandbox, record: Record) -> None:
    """`time.sleep(600)` with a 2 s timeout"""
    record(expected="status=timeout after ~2 s, interrupted (no restart needed); kernel state kept")
    await sandbox.execute("kept = 'still here'")
    result = await sandbox.execute("import time\ntime.sleep(600)", timeout=2)
    after = await sandbox.execute("kept", timeout=20)
    value = after.outputs[0]["data"]["text/plain"] if after.ok and after.outputs else None
    record(
        observed=f"{short(result)} after {result.duration:.1f} s; "
        f"interrupt_ignored={result.interrupt_ignored}; "
        f"kept -> {value}"
    )
    assert result.status == "timeout" and not result.interrupt_ignored
    assert "interrupted" in result.detail and result.duration < 10
    assert value == "'still here'"


async def test_segfault_is_reported(sandbox: Sandbox, record: Record) -> None:
    """`ctypes.string_at(0)` (NULL dereference)"""
    record(expected="status=kernel_died, detail 'crashed: ... SIGSEGV'")
    result = await sandbox.execute("import ctypes\nctypes.string_at(0)", timeout=20)
    record(observed=short(result))
    assert result.status == "kernel_died"
    assert result.detail.startswith("crashed") and "SIGSEGV" in result.detail


async def test_os_exit_is_reported(sandbox: Sandbox, record: Record) -> None:
    """`os._exit(3)`"""
    record(expected="status=kernel_died, detail 'exited ... code 3'")
    result = await sandbox.execute("import os\nos._exit(3)", timeout=20)
    record(observed=short(result))
    assert result.status == "kernel_died"
    assert result.detail.startswith("exited") and result.detail.rstrip().endswith("3")


async def test_kill_pid1_from_inside(sandbox: Sandbox, record: Record) -> None:
    """`os.kill(1, signal.SIGKILL)` (PID 1 is docker-init)"""
    record(
        expected="no effect: PID 1 is the namespace's init, which ignores SIGKILL from inside its "
        "namespace; the cell completes and the kernel stays alive"
    )
    result = await sandbox.execute(
        "import os, signal, time\nos.kill(1, signal.SIGKILL)\ntime.sleep(0.5)\n"
        "print([l.split()[1] for l in open('/proc/1/status') if l.startswith('State')][0])",
        timeout=20,
    )
    reason = await sandbox.death_reason()
    record(
        observed=f"{short(result)}, PID 1 state afterwards={result.text().strip()!r}, "
        f"death_reason()={reason}"
    )
    assert result.ok and result.text().strip() in ("S", "R")
    assert reason is None


async def test_kill_every_process_from_inside(sandbox: Sandbox, record: Record) -> None:
    """`os.kill(-1, SIGKILL)` (every process the kernel may signal), while the sandbox has a
    child and the host runs a process with the sandbox's uid"""
    record(
        expected="only the sandbox's own processes are reachable: its child dies, the kernel "
        "(the caller) and PID 1 are spared by kill(-1) semantics; the host process with the same "
        "uid survives (PID namespace)"
    )
    uid = 1000 if os.geteuid() == 0 else os.geteuid()
    root = os.geteuid() == 0
    sentinel = subprocess.Popen(
        ["sleep", "120"], user=uid if root else None, group=uid if root else None
    )
    try:
        result = await sandbox.execute(
            "import os, signal, subprocess, time\n"
            "child = subprocess.Popen(['sleep', '60'])\n"
            "os.kill(-1, signal.SIGKILL)\n"
            "time.sleep(0.3)\n"
            "print(child.poll())",
            timeout=20,
        )
        alive = sentinel.poll() is None
    finally:
        sentinel.kill()
        sentinel.wait()
    reason = await sandbox.death_reason()
    child = result.text().strip()
    record(
        observed=f"{short(result)}; the sandbox's child exit status={child}; kernel "
        f"death_reason()={reason}; "
        f"host process (uid {uid}) alive: {alive}"
    )
    assert result.ok and child == "-9"
    assert reason is None
    assert alive


FORGED = {
    "stream without 'text'": "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout'}, "
    "parent=parent)",
    "display_data whose data is a string": (
        "k.session.send(k.iopub_socket, 'display_data', {'data': 'not a dict', 'metadata': {}}, "
        "parent=parent)"
    ),
    "unsigned garbage frames": (
        "k.iopub_socket.send_multipart([b'stream', b'<IDS|MSG>', b'bad-signature', b'{', b'{', "
        "b'{', b'{'])"
    ),
    "replay of a valid message (duplicate signature)": textwrap.dedent(
        """\
        message = k.session.msg('stream', {'name': 'stdout', 'text': 'x'}, parent=parent)
        frames = k.session.serialize(message)
        k.iopub_socket.send_multipart(frames)
        k.iopub_socket.send_multipart(frames)"""
    ),
    "correctly signed message with invalid JSON": textwrap.dedent(
        """\
        frames = [b'{"msg_id": "forged"', b'{}', b'{}', b'{}']
        k.iopub_socket.send_multipart([b'stream', b'<IDS|MSG>', k.session.sign(frames)] + frames)"""
    ),
}


@pytest.mark.parametrize("forgery", list(FORGED))
async def test_forged_iopub_message(
    forgery: str, start_sandbox: StartSandbox, record: Record
) -> None:
    """Code in the kernel publishes a malformed message on its own IOPub socket"""
    record(
        attack=f"Forged IOPub message from inside the kernel (it holds the sockets and the HMAC "
        f"key): {forgery}",
        expected="Sandbox.execute returns a result (the bad message dropped or reported), never "
        "raises into the host; the next cell works",
    )
    box = await start_sandbox()
    code = (
        "k = get_ipython().kernel\nparent = k.get_parent()\n" + FORGED[forgery] + "\nprint('end')"
    )
    try:
        result = await box.execute(code, timeout=10)
        record(observed=f"returned {short(result)}, outputs={len(result.outputs)}")
        raised = None
    except Exception as error:
        raised = error
        record(
            observed=f"Sandbox.execute raised {type(error).__name__}: "
            f"{str(error).splitlines()[0][:90]}"
        )
    after = await box.execute("print('next')", timeout=10)
    record.observe(f"next cell: {short(after)} {after.text().strip()!r}")
    assert raised is None, f"{type(raised).__name__} escaped into the host"
    assert after.ok and after.text().strip() == "next"


async def test_iopub_flood_loses_the_idle_status(
    start_sandbox: StartSandbox, record: Record
) -> None:
    """Flood IOPub from the kernel's IO thread (100000 valid, uniquely signed messages for
    another request, cheap to send and slow to decode) while cells finish"""
    record(
        expected="every cell finishing during the flood is reported finished (its execute_reply "
        "arrives on the shell channel even when ZMQ drops IOPub messages past the high-water "
        "mark, the idle status included): status ok, no false timeout, no restart, state kept"
    )
    box = await start_sandbox(interrupt_grace=2.0)
    code = textwrap.dedent(
        """\
        import hashlib, hmac, threading, time
        k = get_ipython().kernel
        prefix = ('{"msg_type": "stream", "username": "x", "session": "%s", "version": "5.3", '
                  '"date": "2024-01-01T00:00:00.000000Z", "msg_id": "flood-' % k.session.session)
        parent, meta = b'{"msg_id": "another-request"}', b'{}'
        # cheap to send, slow to decode: the host falls behind and ZMQ starts dropping
        content = b'{"name": "stdout", "text": "x", "pad": [' + b','.join([b'0'] * 4000) + b']}'
        def frames(i):
            header = (prefix + str(i) + '"}').encode()
            digest = hmac.new(k.session.key, digestmod=hashlib.sha256)
            for part in (header, parent, meta, content):
                digest.update(part)
            signature = digest.hexdigest().encode()
            return [b'stream', b'<IDS|MSG>', signature, header, parent, meta, content]
        batch = [frames(i) for i in range(100000)]
        io, flood_done = k.iopub_socket.io_thread, threading.Event()
        def blast(chunk, last):  # on the IO thread, in the same queue as the idle statuses
            for f in chunk:
                io.socket.send_multipart(f)
            if last:
                flood_done.set()
        def flood():
            for start in range(0, len(batch), 5000):
                last = start + 5000 >= len(batch)
                io.schedule(lambda c=batch[start:start + 5000], l=last: blast(c, l))
                time.sleep(0.02)
        kept = 'state'
        threading.Thread(target=flood, daemon=True).start()
        time.sleep(0.3)
        print('cell finished')"""
    )
    result = await box.execute(code, timeout=10)
    during = [await box.execute("copy = kept", timeout=5) for _ in range(3)]
    after = await box.execute(
        "flood_done.wait(60)\nimport time\ntime.sleep(1)  # let the host catch up\ncopy", timeout=90
    )
    value = after.outputs[0]["data"]["text/plain"] if after.ok and after.outputs else None
    record(
        observed=f"flood cell: {short(result)} after {result.duration:.0f} s; 3 cells during the "
        f"flood: {[r.status for r in during]}; once the flood is over: {short(after)} -> {value}"
    )
    lost = [r.detail for r in (result, *during) if not r.ok]
    assert lost == [], "a finished cell was reported as not finished (its idle status was lost)"
    assert value == "'state'"


async def test_forged_idle_status(sandbox: Sandbox, record: Record) -> None:
    """Publish a forged 'idle' status for the running cell, then keep printing"""
    record(
        expected="the cell may end early (the kernel speaks for itself), but its later output "
        "never leaks into the next cell, and the next cell works"
    )
    result = await sandbox.execute(
        "k = get_ipython().kernel\n"
        "k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, "
        "parent=k.get_parent())\n"
        "import time; time.sleep(1)\nprint('late output')",
        timeout=10,
    )
    after = await sandbox.execute("print('next')", timeout=10)
    record(
        observed=f"forged cell: {short(result)}, text={result.text().strip()!r}; next cell: "
        f"{short(after)}, text={after.text().strip()!r}"
    )
    assert after.ok and after.text().strip() == "next"


async def test_container_state_after_faults_is_consistent(sandbox: Sandbox, record: Record) -> None:
    """Crash the kernel, then ask the host for the sandbox's state and restart it"""
    record(expected="death_reason() matches Docker's State; restart() brings a working kernel back")
    result = await sandbox.execute("import ctypes\nctypes.string_at(0)", timeout=20)
    reason = await sandbox.death_reason()
    state = container_attrs(sandbox)["State"]
    await sandbox.restart()
    after = await sandbox.execute("1 + 1", timeout=20)
    record(
        observed=f"{short(result)}; death_reason()={reason!r}; Docker "
        f"ExitCode={state.get('ExitCode')}; "
        f"after restart: {short(after)}"
    )
    assert reason is not None and state.get("ExitCode") == 139 and "SIGSEGV" in reason
    assert after.ok
