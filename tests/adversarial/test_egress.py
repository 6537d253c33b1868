"""Egress by allowlist: the sandbox keeps no network interface; the host's proxy is its
only way out, to the listed destinations only, and records every request.

Every server here listens on the host's 127.0.0.1; every refused destination is refused
before any connection or name lookup is made, so no packet leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient

from kernelagent.execution.run import execute
from kernelagent.sandbox.egress_proxy import EgressRecord
from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import container_attrs, probe
from tests.adversarial.conftest import Record, StartSandbox
from tests.egress_servers import RecordingHTTPServer, egress_records

FETCH = """
import urllib.request, urllib.error
def fetch(url, **kwargs):
    try:
        with urllib.request.urlopen(url, timeout=20, **kwargs) as answer:
            return f'{answer.status} {answer.read().decode()}'
    except urllib.error.HTTPError as error:
        return f'{error.code} {error.read().decode().strip()}'
    except (urllib.error.URLError, OSError) as error:
        return f'failed: {getattr(error, "reason", error)}'
"""


async def records_of(sandbox: Sandbox, count: int) -> list[EgressRecord]:
    """The sandbox's egress records once ``count`` requests ended, in the order they started."""
    assert sandbox.egress is not None
    return await egress_records(sandbox.egress, count, timeout=5.0)


async def test_only_listed_destinations_answer_and_both_are_audited(
    start_sandbox: StartSandbox,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    record: Record,
    tmp_path: Path,
) -> None:
    """With --allow-net 127.0.0.1:A, fetch http://127.0.0.1:A/ (allowed) and http://127.0.0.1:B/
    (not listed) from inside"""
    allowed, refused = servers
    log = tmp_path / "egress.jsonl"
    record(
        expected="A answers through the proxy; B gets a 403 that names it and says how to allow "
        "it, and B's server sees no connection; the audit (records and log file) has both"
    )
    sandbox = await start_sandbox(network_allow=[f"127.0.0.1:{allowed.port}"], egress_log=str(log))
    out = await probe(
        sandbox,
        FETCH
        + f"""
out['allowed'] = fetch('http://127.0.0.1:{allowed.port}/data.csv')
out['refused'] = fetch('http://127.0.0.1:{refused.port}/data.csv')
""",
    )
    records = await records_of(sandbox, 2)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    record(
        observed=f"A -> {out['allowed']!r}; B -> {out['refused'][:150]!r}; B's connections="
        f"{refused.connections}; audit: "
        f"{[(r.method, r.port, r.decision, r.status) for r in records]}, "
        f"{len(logged)} log lines"
    )
    assert out["allowed"] == "200 hello /data.csv"
    assert out["refused"].startswith(f"403 127.0.0.1:{refused.port} is not in the egress allowlist")
    assert f"--allow-net 127.0.0.1:{refused.port}" in out["refused"]
    assert refused.connections == 0
    assert [(r.decision, r.port, r.status) for r in records] == [
        ("allowed", allowed.port, 200),
        ("refused", refused.port, 403),
    ]
    assert records[0].bytes_down > 0 and records[0].bytes_up > 0
    assert sorted(line["decision"] for line in logged) == ["allowed", "refused"]


async def test_https_through_connect_like_pip(
    start_sandbox: StartSandbox, record: Record, tmp_path: Path
) -> None:
    """HTTPS as pip does it (HTTPS_PROXY, CONNECT, TLS verified end to end) to an allowed and an
    unlisted port"""
    record(
        expected="the allowed TLS server answers (certificate verified inside the sandbox); the "
        "unlisted one fails with 'Tunnel connection failed: 403 ...' naming it; both audited"
    )
    allowed = RecordingHTTPServer(tls_directory=tmp_path / "tls-a")
    refused = RecordingHTTPServer(tls_directory=tmp_path / "tls-b")
    try:
        sandbox = await start_sandbox(network_allow=[f"127.0.0.1:{allowed.port}"])
        assert allowed.certificate is not None
        sandbox.put_file(allowed.certificate, "allowed-ca.pem")
        out = await probe(
            sandbox,
            FETCH
            + f"""
import os, ssl
context = ssl.create_default_context(cafile='allowed-ca.pem')
out['proxy'] = os.environ['HTTPS_PROXY']
out['allowed'] = fetch('https://127.0.0.1:{allowed.port}/simple/pandas/', context=context)
out['refused'] = fetch(
    'https://127.0.0.1:{refused.port}/simple/', context=ssl._create_unverified_context()
)
""",
        )
        records = await records_of(sandbox, 2)
    finally:
        allowed.close()
        refused.close()
    record(
        observed=f"HTTPS_PROXY={out['proxy']}; allowed -> {out['allowed']!r}; unlisted -> "
        f"{out['refused'][:140]!r}; audit: {[(r.method, r.port, r.decision) for r in records]}"
    )
    assert out["allowed"] == "200 hello /simple/pandas/"
    assert "Tunnel connection failed: 403" in out["refused"] and str(refused.port) in out["refused"]
    assert refused.connections == 0
    assert [(r.method, r.decision) for r in records] == [
        ("CONNECT", "allowed"),
        ("CONNECT", "refused"),
    ]
    assert records[0].bytes_down > 1000  # the TLS handshake and the answer went through the tunnel


async def test_direct_connections_still_fail(
    start_sandbox: StartSandbox,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    record: Record,
) -> None:
    """With egress allowed to 127.0.0.1:A, bypass the proxy: connect straight to A, list interfaces
    and routes"""
    allowed, _ = servers
    record(
        expected="still only `lo` and no route, the hardened settings unchanged, the egress mount "
        "read-only; a direct connection reaches the container's own loopback (refused), never the "
        "host's server"
    )
    sandbox = await start_sandbox(network_allow=[f"127.0.0.1:{allowed.port}"])
    out = await probe(
        sandbox,
        f"""
import os, socket, urllib.request
out['interfaces'] = sorted(os.listdir('/sys/class/net'))
out['routes'] = open('/proc/net/route').read().splitlines()[1:]
try:
    socket.create_connection(('127.0.0.1', {allowed.port}), timeout=3).close()
    out['direct'] = 'connected'
except OSError as e:
    out['direct'] = f'{{type(e).__name__}}: {{e}}'
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
try:
    opener.open('http://127.0.0.1:{allowed.port}/', timeout=3)
    out['no_proxy'] = 'answered'
except OSError as e:
    out['no_proxy'] = f'{{type(e).__name__}}: {{e}}'
""",
    )
    host_config = container_attrs(sandbox)["HostConfig"]
    mounts = {m["Destination"]: m["RW"] for m in container_attrs(sandbox)["Mounts"]}
    record(
        observed=f"interfaces={out['interfaces']}, routes={len(out['routes'])}; direct -> "
        f"{out['direct']}; urllib without proxy -> {out['no_proxy']}; host server connections="
        f"{allowed.connections}; NetworkMode={host_config['NetworkMode']}, CapDrop="
        f"{host_config['CapDrop']}, read-only root={host_config['ReadonlyRootfs']}, egress mount "
        f"writable={mounts.get('/run/kernelagent-egress')}"
    )
    assert out["interfaces"] == ["lo"] and out["routes"] == []
    assert host_config["NetworkMode"] == "none" and host_config["CapDrop"] == ["ALL"]
    assert host_config["ReadonlyRootfs"] and "no-new-privileges" in host_config["SecurityOpt"]
    assert mounts["/run/kernelagent-egress"] is False
    assert out["direct"].startswith("ConnectionRefusedError")
    assert "answered" not in out["no_proxy"]
    assert allowed.connections == 0


async def test_private_addresses_and_url_tricks_are_refused(
    start_sandbox: StartSandbox,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    record: Record,
) -> None:
    """Through the proxy: cloud metadata (169.254.169.254), a private IP, userinfo tricks
    (http://A@B/), another port of the allowed host, a raw CONNECT"""
    allowed, _ = servers
    record(
        expected="every one refused (403/400) before any connection is made; the allowed "
        "server sees no request"
    )
    sandbox = await start_sandbox(network_allow=[f"127.0.0.1:{allowed.port}"])
    out = await probe(
        sandbox,
        FETCH
        + f"""
import http.client
out['metadata'] = fetch('http://169.254.169.254/latest/meta-data/')
out['private'] = fetch('http://10.0.0.1/')
out['userinfo'] = fetch('http://127.0.0.1:{allowed.port}@10.0.0.1/')
out['other_port'] = fetch('http://127.0.0.1:{allowed.port + 1 if allowed.port < 65535 else 1}/')
tunnel = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)
tunnel.set_tunnel('169.254.169.254', 80)
try:
    tunnel.request('GET', '/')
    out['connect'] = 'tunnel opened'
except OSError as e:
    out['connect'] = str(e)
""",
    )
    records = await records_of(sandbox, 5)
    record(
        observed="; ".join(f"{k} -> {v[:70]!r}" for k, v in out.items())
        + f"; decisions={[r.decision for r in records]}; allowed server "
        f"requests={len(allowed.requests)}"
    )
    assert all(
        value.startswith(("403", "400")) for key, value in out.items() if key != "connect"
    ), out
    assert out["connect"].startswith("Tunnel connection failed: 403")
    assert [r.decision for r in records] == ["refused"] * 5
    assert all(r.address is None for r in records)  # nothing was connected to
    assert allowed.requests == []


async def test_secret_headers_never_enter_the_sandbox(
    start_sandbox: StartSandbox,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    record: Record,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A destination's API key is added by the proxy; look for it everywhere inside (environment of
    every process, the egress mount)"""
    allowed, _ = servers
    secret = "sk-adversarial-" + os.urandom(8).hex()
    monkeypatch.setenv("KA_ADVERSARIAL_TOKEN", secret)
    record(expected="the allowed server receives the header; the secret is nowhere in the sandbox")
    rule = f"127.0.0.1:{allowed.port}"
    sandbox = await start_sandbox(
        network_allow=[rule],
        network_headers={rule: {"Authorization": "Bearer ${KA_ADVERSARIAL_TOKEN}"}},
    )
    out = await probe(
        sandbox,
        FETCH
        + f"""
import glob, os
out['answer'] = fetch('http://127.0.0.1:{allowed.port}/private')
found = []
for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/run/kernelagent-egress/*'):
    try:
        data = open(path, 'rb').read()
    except OSError:
        continue
    if {secret.encode()!r} in data:
        found.append(path)
out['found'] = found
""",
    )
    received = allowed.requests[-1]["headers"].get("Authorization") if allowed.requests else None
    record(
        observed=f"answer={out['answer']!r}; server got "
        f"Authorization={'Bearer <secret>' if received == f'Bearer {secret}' else received!r}; "
        f"secret found inside at {out['found']}"
    )
    assert out["answer"] == "200 hello /private"
    assert received == f"Bearer {secret}"
    assert out["found"] == []


async def test_the_egress_mount_cannot_be_tampered_with(
    start_sandbox: StartSandbox,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    record: Record,
) -> None:
    """Remove or replace the proxy socket and the forwarder script in /run/kernelagent-egress"""
    allowed, _ = servers
    record(
        expected="read-only file system (or permission denied) for each; egress still works after"
    )
    sandbox = await start_sandbox(network_allow=[f"127.0.0.1:{allowed.port}"])
    out = await probe(
        sandbox,
        FETCH
        + f"""
import os
for name, attempt in {{
    'unlink socket': lambda: os.unlink('/run/kernelagent-egress/proxy.sock'),
    'replace forwarder': lambda: open('/run/kernelagent-egress/forwarder.py', 'w').write('x'),
    'new file': lambda: open('/run/kernelagent-egress/mine', 'w').write('x'),
    'rename socket': lambda: os.rename('/run/kernelagent-egress/proxy.sock', '/tmp/s'),
}}.items():
    try:
        attempt()
        out[name] = 'done'
    except OSError as e:
        out[name] = type(e).__name__ + ': ' + (e.strerror or '')
out['after'] = fetch('http://127.0.0.1:{allowed.port}/after')
""",
    )
    record(observed="; ".join(f"{k} -> {v}" for k, v in out.items()))
    assert all(value != "done" for key, value in out.items() if key != "after"), out
    assert out["after"] == "200 hello /after"


async def test_a_crashed_proxy_fails_closed(
    docker_available: None,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    record: Record,
    tmp_path: Path,
) -> None:
    """SIGKILL the host process that runs the sandbox's proxy, then fetch the allowed destination
    from the (still running) kernel"""
    allowed, _ = servers
    record(
        expected="the request fails (the in-sandbox relay finds no proxy: 502 'no network'); "
        "the server sees no connection; re-attaching starts a proxy and egress works again"
    )
    script = textwrap.dedent(f"""
        import asyncio, json, os, signal
        from kernelagent.sandbox.sandbox import Sandbox
        from kernelagent.sandbox.settings import SandboxSettings
        async def main():
            sandbox = await Sandbox.start(
                SandboxSettings(network_allow=['127.0.0.1:{allowed.port}']),
                {str(tmp_path / "ws")!r},
            )
            print(json.dumps(sandbox.state()), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    client = AsyncKernelClient()
    client.load_connection_info(state["connection_info"])
    client.start_channels()
    sandbox: Sandbox | None = None
    try:
        code = FETCH + f"print(fetch('http://127.0.0.1:{allowed.port}/while-down'))"
        down = await execute(client, code, timeout=60)
        client.stop_channels()
        sandbox = await Sandbox.attach(state)
        up = await sandbox.execute(
            FETCH + f"print(fetch('http://127.0.0.1:{allowed.port}/after'))", timeout=60
        )
    finally:
        if sandbox is not None:
            await sandbox.shutdown()
        else:
            from kernelagent.sandbox.maintenance import discard_sandbox

            discard_sandbox(state)
    record(
        observed=f"proxy process killed (exit {done.returncode}); fetch -> "
        f"{down.text().strip()!r}; "
        f"server saw {len(allowed.requests)} request(s) ({[r['path'] for r in allowed.requests]}); "
        f"after re-attach -> {up.text().strip()!r}"
    )
    assert down.text().strip().startswith("502 kernelagent: the host's egress proxy is not running")
    assert [request["path"] for request in allowed.requests] == ["/after"]
    assert up.text().strip() == "200 hello /after"
