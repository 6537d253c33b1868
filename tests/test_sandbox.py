"""The sandbox with a real Docker engine and a real ipykernel (and the local fallback)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from kernelagent.sandbox.sandbox import Sandbox, SandboxDeadError
from kernelagent.sandbox.settings import SandboxSettings


async def test_state_persists_across_cells(any_sandbox: Sandbox) -> None:
    assert (
        await any_sandbox.execute("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})")
    ).ok
    result = await any_sandbox.execute("int(df['a'].sum())")
    assert result.ok
    assert result.outputs[-1]["data"]["text/plain"] == "6"


async def test_outputs_of_each_kind(any_sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import sys
        from IPython.display import display, HTML
        print("to stdout")
        print("to stderr", file=sys.stderr)
        display(HTML("<b>bold</b>"))
        {"answer": 42}
        """
    )
    result = await any_sandbox.execute(code)
    kinds = [(o["output_type"], o.get("name")) for o in result.outputs]
    assert ("stream", "stdout") in kinds and ("stream", "stderr") in kinds
    html = next(o for o in result.outputs if o["output_type"] == "display_data")
    assert html["data"]["text/html"] == "<b>bold</b>" and "text/plain" in html["data"]
    assert result.outputs[-1]["output_type"] == "execute_result"
    assert result.execution_count == result.outputs[-1]["execution_count"]

    error = await any_sandbox.execute("1/0")
    assert error.status == "error"
    assert error.outputs[-1]["ename"] == "ZeroDivisionError"


async def test_matplotlib_plot_arrives_as_png(any_sandbox: Sandbox) -> None:
    result = await any_sandbox.execute(
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()"
    )
    assert result.ok, result.text()
    images = [o for o in result.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert base64.b64decode(images[0]["data"]["image/png"]).startswith(b"\x89PNG")


async def test_timeout_interrupts_and_kernel_stays_usable(any_sandbox: Sandbox) -> None:
    await any_sandbox.execute("kept = 'still here'")
    result = await any_sandbox.execute("while True:\n    pass", timeout=2)
    assert result.status == "timeout"
    assert "interrupted" in result.detail
    after = await any_sandbox.execute("kept")
    assert after.ok and "still here" in after.outputs[0]["data"]["text/plain"]


async def test_ignored_interrupt_escalates_to_restart(any_sandbox: Sandbox) -> None:
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    result = await any_sandbox.execute(code, timeout=1.5)
    assert result.status == "timeout" and result.interrupt_ignored
    assert "restarted" in result.detail
    assert (await any_sandbox.execute("1 + 1")).outputs[0]["data"]["text/plain"] == "2"


async def test_output_flood_is_capped(any_sandbox: Sandbox) -> None:
    any_sandbox.settings.output_limit = 100_000
    result = await any_sandbox.execute("for _ in range(2000):\n    print('x' * 1000)")
    assert result.ok and result.truncated
    kept = sum(len(o.get("text", "")) for o in result.outputs)
    assert kept < 101_000
    assert "output truncated" in result.outputs[-1]["text"]
    assert result.dropped_bytes > 1_800_000


async def test_shell_runs_in_the_same_sandbox(any_sandbox: Sandbox) -> None:
    (any_sandbox.workspace / "note.txt").write_text("hello")
    result = await any_sandbox.shell("cat note.txt && echo && whoami || id -u")
    assert result.ok, result.text()
    assert "hello" in result.text()


async def test_files_in_and_out_of_the_workspace(any_sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n3,4\n")
    any_sandbox.put_file(source, "inputs/data.csv")
    result = await any_sandbox.execute(
        "import pandas as pd\n"
        "df = pd.read_csv('inputs/data.csv')\n"
        "df.assign(c=df.a + df.b).to_csv('out.csv', index=False)"
    )
    assert result.ok, result.text()
    copied = any_sandbox.get_file("out.csv", tmp_path / "out.csv")
    assert copied.read_text().splitlines() == ["a,b,c", "1,2,3", "3,4,7"]
    with pytest.raises(ValueError, match="outside the sandbox workspace"):
        any_sandbox.put_file(source, "../escape.csv")


async def test_os_exit_is_reported_with_reason(any_sandbox: Sandbox) -> None:
    result = await any_sandbox.execute("import os\nos._exit(3)")
    assert result.status == "kernel_died"
    assert result.detail.startswith("exited") and "3" in result.detail


# -- Docker only ------------------------------------------------------------------------


async def test_network_is_unreachable(docker_sandbox: Sandbox) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[object] = []
    listener.settimeout(5)
    threading.Thread(target=lambda: _accept_once(listener, accepted), daemon=True).start()

    code = textwrap.dedent(
        f"""
        import os, socket
        interfaces = sorted(os.listdir('/sys/class/net'))
        try:
            socket.create_connection(('127.0.0.1', {port}), timeout=3)
            reached = True
        except OSError:
            reached = False
        try:
            socket.getaddrinfo('pypi.org', 443)
            resolved = True
        except OSError:
            resolved = False
        print(interfaces, reached, resolved)
        """
    )
    result = await docker_sandbox.execute(code)
    listener.close()
    assert result.ok, result.text()
    assert result.text().strip() == "['lo'] False False"
    assert accepted == []


def _accept_once(listener: socket.socket, accepted: list[object]) -> None:
    with contextlib.suppress(OSError):
        accepted.append(listener.accept())


async def test_hardening(docker_sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import os
        status = {}
        status['uid'] = os.getuid()
        try:
            open('/evil', 'w')
            status['root_writable'] = True
        except OSError:
            status['root_writable'] = False
        with open('/workspace/ok.txt', 'w') as f:
            f.write('ok')
        caps = [l for l in open('/proc/self/status')
                if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))]
        status['caps'] = ''.join(caps)
        print(status)
        """
    )
    result = await docker_sandbox.execute(code)
    assert result.ok, result.text()
    status = eval(result.text())  # a dict literal we printed ourselves
    assert status["uid"] != 0
    assert status["root_writable"] is False
    assert "CapEff:\t0000000000000000" in status["caps"]
    assert "CapBnd:\t0000000000000000" in status["caps"]
    assert "NoNewPrivs:\t1" in status["caps"]
    assert (docker_sandbox.workspace / "ok.txt").read_text() == "ok"

    container = docker_sandbox.manager.provisioner._container()
    host_config = container.attrs["HostConfig"]
    assert host_config["NetworkMode"] == "none"
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["Memory"] == 1024**3
    assert host_config["PidsLimit"] == 256
    assert host_config["NanoCpus"] == 1_000_000_000


async def test_host_secrets_never_enter_the_sandbox(
    docker_settings: SandboxSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-do-not-leak")
    sandbox = await Sandbox.start(docker_settings, tmp_path)
    try:
        result = await sandbox.execute(
            "import os, glob\n"
            "blobs = [open(p, 'rb').read() for p in glob.glob('/proc/[0-9]*/environ')]\n"
            "print(any(b'sk-host-secret' in b for b in blobs), 'OPENAI_API_KEY' in os.environ)"
        )
        assert result.text().strip() == "False False"
    finally:
        await sandbox.shutdown()


async def test_oom_kill_is_reported(docker_available: None, tmp_path: Path) -> None:
    sandbox = await Sandbox.start(SandboxSettings(mem_limit="200m"), tmp_path)
    try:
        result = await sandbox.execute(
            "hog = bytearray(600 * 1024 * 1024)\nhog[::4096] = b'x' * len(hog[::4096])"
        )
        assert result.status == "kernel_died"
        assert result.detail.startswith("OOM-killed"), result.detail
    finally:
        await sandbox.shutdown()


async def test_reattach_from_another_process(
    docker_settings: SandboxSettings, tmp_path: Path
) -> None:
    """A host process starts a sandbox, sets a variable and dies; we re-attach."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, os
        from kernelagent.sandbox.sandbox import Sandbox
        from kernelagent.sandbox.settings import SandboxSettings

        async def main():
            sandbox = await Sandbox.start(SandboxSettings(), {str(tmp_path / "ws")!r})
            await sandbox.execute("answer = 6 * 7")
            print(json.dumps(sandbox.state()), flush=True)
            os._exit(0)  # no shutdown: the host process just disappears

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    state = json.loads(done.stdout.strip().splitlines()[-1])
    sandbox = await Sandbox.attach(state)
    try:
        result = await sandbox.execute("answer")
        assert result.outputs[0]["data"]["text/plain"] == "42"
    finally:
        await sandbox.shutdown()
    with pytest.raises(SandboxDeadError):
        await Sandbox.attach(state)


async def test_missing_image_gives_a_clear_error(docker_available: None, tmp_path: Path) -> None:
    from kernelagent.sandbox.sandbox import SandboxError

    with pytest.raises(SandboxError, match="kernelagent image build"):
        await Sandbox.start(SandboxSettings(image="kernelagent-no-such-image:latest"), tmp_path)


def test_local_sandbox_warns_on_every_start(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import asyncio

    async def start_twice() -> None:
        for _ in range(2):
            sandbox = await Sandbox.start(SandboxSettings(kind="local"), tmp_path)
            await sandbox.shutdown()

    asyncio.run(start_twice())
    assert capfd.readouterr().err.count("NOT isolated") == 2


def test_local_sandbox_does_not_copy_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio

    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")

    async def check() -> str:
        sandbox = await Sandbox.start(SandboxSettings(kind="local"), tmp_path)
        try:
            return (
                await sandbox.execute("import os; print('OPENAI_API_KEY' in os.environ)")
            ).text()
        finally:
            await sandbox.shutdown()

    assert asyncio.run(check()).strip() == "False"
    assert os.environ["OPENAI_API_KEY"] == "sk-host-secret"
