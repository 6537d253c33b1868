"""The egress allowlist and the host proxy, without Docker (the sandbox side is in
tests/adversarial/test_egress.py). Every server here listens on 127.0.0.1; names are
resolved by a test resolver, never by DNS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nbformat
import pytest

from kernelagent.sandbox.egress_proxy import EgressProxy, destination_of, parse_head
from kernelagent.sandbox.egress_rules import Allowlist, EgressRuleError, covered_by, parse_rule
from kernelagent.sandbox.egress_setup import EgressConfigError, check_settings, expand_headers
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.egress_servers import RecordingHTTPServer, egress_records


def test_rules_parse_every_documented_form() -> None:
    assert parse_rule("pypi.org").ports == frozenset({80, 443})
    assert parse_rule("PyPI.org:443").host == "pypi.org"
    assert parse_rule("api.internal:*").ports is None
    assert parse_rule("*.pythonhosted.org").is_wildcard
    assert str(parse_rule("127.0.0.1:8080").network) == "127.0.0.1/32"
    assert str(parse_rule("[::1]:8080").network) == "::1/128"
    assert str(parse_rule("10.0.0.0/8:5432").network) == "10.0.0.0/8"
    assert str(parse_rule("[fd00::/8]:443").network) == "fd00::/8"
    for bad in ("", "pypi.org:0", "pypi.org:http", "::1:80", "*", "a b", "[::1", "http://pypi.org"):
        with pytest.raises(EgressRuleError):
            parse_rule(bad)


def test_wildcards_match_subdomains_only() -> None:
    rule = parse_rule("*.pythonhosted.org:443")
    assert rule.matches_name("files.pythonhosted.org")
    assert not rule.matches_name("pythonhosted.org")
    assert not rule.matches_name("evilpythonhosted.org")


def test_coverage_of_requested_rules_by_permitted_ones() -> None:
    permitted = ["*.pythonhosted.org:443", "pypi.org", "10.0.0.0/8:*"]
    assert (
        covered_by(["files.pythonhosted.org:443", "pypi.org:443", "10.1.2.3:5432"], permitted) == []
    )
    assert covered_by(["*.a.pythonhosted.org:443", "10.0.0.0/16:80"], permitted) == []
    assert covered_by(
        ["pypi.org:*", "evil.org", "11.0.0.1:80", "pythonhosted.org:443"], permitted
    ) == [
        "pypi.org:*",
        "evil.org",
        "11.0.0.1:80",
        "pythonhosted.org:443",
    ]


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(name: str, port: int) -> list[str]:
        if name not in table:
            raise OSError(f"unknown name {name}")
        return table[name]

    return resolve


async def test_names_resolving_to_non_public_addresses_need_an_exact_rule_or_an_ip_rule() -> None:
    table = {
        "files.example.org": ["151.101.0.1"],
        "sneaky.example.org": ["127.0.0.1"],
        "db.internal": ["10.0.0.7"],
        "metadata.internal": ["169.254.169.254"],
    }
    allowlist = Allowlist(["*.example.org:443", "db.internal:5432", "metadata.internal:80"])
    resolve = resolver(table)
    public = await allowlist.decide("files.example.org", 443, resolve)
    assert public.allowed and public.address == "151.101.0.1"
    rebound = await allowlist.decide("sneaky.example.org", 443, resolve)
    assert (
        not rebound.allowed
        and "127.0.0.1" in rebound.reason
        and "--allow-net 127.0.0.1:443" in rebound.reason
    )
    exact = await allowlist.decide("db.internal", 5432, resolve)
    assert exact.allowed and exact.address == "10.0.0.7"
    metadata = await allowlist.decide("metadata.internal", 80, resolve)
    assert not metadata.allowed
    assert (
        await Allowlist(["metadata.internal:80", "169.254.169.254:80"]).decide(
            "metadata.internal", 80, resolve
        )
    ).allowed
    unlisted = await allowlist.decide("files.example.org", 80, resolve)
    assert (
        not unlisted.allowed
        and "files.example.org:80 is not in the egress allowlist" in unlisted.reason
    )


async def test_ip_literals_need_an_ip_rule() -> None:
    allowlist = Allowlist(["127.0.0.1:8080", "10.0.0.0/8:443", "example.org"])
    never = resolver({})
    assert (await allowlist.decide("127.0.0.1", 8080, never)).allowed
    assert (await allowlist.decide("10.9.9.9", 443, never)).allowed
    assert not (await allowlist.decide("127.0.0.1", 8081, never)).allowed
    refused = await allowlist.decide("169.254.169.254", 80, never)
    assert (
        not refused.allowed
        and "may reach only: 127.0.0.1:8080, 10.0.0.0/8:443, example.org" in refused.reason
    )


def test_settings_refuse_what_would_not_be_audited() -> None:
    with pytest.raises(ValueError, match="needs the Docker sandbox"):
        SandboxSettings(kind="local", network_allow=["pypi.org"])
    with pytest.raises(
        ValueError, match=r"is a URL: it takes HOST\[:PORT\], e.g. --allow-net pypi.org$"
    ):
        SandboxSettings().allowing(["http://pypi.org/simple"])
    with pytest.raises(EgressConfigError, match="network='none'"):
        check_settings(["pypi.org"], "bridge")
    with pytest.raises(EgressConfigError, match="every address"):
        check_settings(["0.0.0.0/0:*"], "none")
    assert SandboxSettings().allowing(["pypi.org", "pypi.org"]).network_allow == ["pypi.org"]


def test_secret_headers_come_from_the_host_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KA_TEST_TOKEN", "t0k3n")
    assert expand_headers({"api:80": {"Authorization": "Bearer ${KA_TEST_TOKEN}"}}) == {
        "api:80": {"Authorization": "Bearer t0k3n"}
    }
    monkeypatch.delenv("KA_TEST_TOKEN")
    with pytest.raises(EgressConfigError, match=r"\$\{KA_TEST_TOKEN\}, which is not set"):
        expand_headers({"api:80": {"Authorization": "Bearer ${KA_TEST_TOKEN}"}})
    monkeypatch.setenv("KA_TEST_TOKEN", "t0k3n\r\nX-Injected: 1")
    with pytest.raises(EgressConfigError, match="line break"):
        expand_headers({"api:80": {"Authorization": "Bearer ${KA_TEST_TOKEN}"}})


def test_request_heads_and_destinations() -> None:
    head = b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n"
    method, target, headers = parse_head(head)  # type: ignore[misc]
    assert (method, target, headers) == ("CONNECT", "pypi.org:443", [("Host", "pypi.org:443")])
    assert destination_of("CONNECT", "[::1]:8443", []) == ("::1", 8443, None)
    assert destination_of("GET", "http://h.example:8080/a/b?t=1", []) == (
        "h.example",
        8080,
        "/a/b?t=1",
    )
    assert "@" not in str(destination_of("GET", "http://evil@127.0.0.1:80/", []))
    assert "absolute form" in str(destination_of("GET", "/relative", []))
    assert parse_head(b"\x16\x03\x01 not http\r\n\r\n") is None


@pytest.fixture
async def proxy(
    tmp_path: Path,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[EgressProxy]:
    allowed, _ = servers
    monkeypatch.setenv("KA_TEST_SECRET", "s3cret")
    rule = f"127.0.0.1:{allowed.port}"
    running = EgressProxy(
        Allowlist([rule]),
        tmp_path / "e" / "proxy.sock",
        log_path=tmp_path / "egress.jsonl",
        headers=expand_headers({rule: {"X-Api-Key": "${KA_TEST_SECRET}"}}),
        kernel_id="k-1",
    )
    await running.start()
    try:
        yield running
    finally:
        await running.aclose()


async def exchange(proxy: EgressProxy, request: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


async def test_plain_http_is_forwarded_with_the_secret_and_audited(
    proxy: EgressProxy, servers: tuple[RecordingHTTPServer, RecordingHTTPServer], tmp_path: Path
) -> None:
    allowed, refused = servers
    answer = await exchange(
        proxy,
        f"GET http://127.0.0.1:{allowed.port}/data?q=1 HTTP/1.1\r\nHost: other-site.example\r\n"
        "X-Api-Key: forged\r\nProxy-Authorization: Basic eA==\r\n"
        "Connection: keep-alive\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"hello /data?q=1")
    request = allowed.requests[-1]
    assert request["path"] == "/data?q=1"
    assert request["headers"]["X-Api-Key"] == "s3cret"
    assert "Proxy-Authorization" not in request["headers"]
    assert request["headers"]["Connection"] == "close"
    assert request["headers"]["Host"] == f"127.0.0.1:{allowed.port}"  # not the client's Host

    denied = await exchange(
        proxy, f"GET http://127.0.0.1:{refused.port}/x HTTP/1.1\r\n\r\n".encode()
    )
    assert denied.startswith(b"HTTP/1.1 403 Forbidden by the kernelagent egress allowlist")
    assert f"--allow-net 127.0.0.1:{refused.port}".encode() in denied
    assert refused.requests == []

    records = await egress_records(proxy, 2)
    assert [(r.decision, r.method, r.port, r.status) for r in records] == [
        ("allowed", "GET", allowed.port, 200),
        ("refused", "GET", refused.port, 403),
    ]
    assert records[0].bytes_down == len(answer) and records[0].bytes_up > 0
    assert records[0].headers_added == ["X-Api-Key"] and records[0].path == "/data"
    logged = [json.loads(line) for line in (tmp_path / "egress.jsonl").read_text().splitlines()]
    assert sorted((line["kernel_id"], line["decision"]) for line in logged) == [
        ("k-1", "allowed"),
        ("k-1", "refused"),
    ]
    assert "s3cret" not in (tmp_path / "egress.jsonl").read_text()


async def test_connect_tunnels_only_to_allowed_destinations(
    proxy: EgressProxy, servers: tuple[RecordingHTTPServer, RecordingHTTPServer]
) -> None:
    allowed, refused = servers
    tunnel = (
        f"CONNECT 127.0.0.1:{allowed.port} HTTP/1.1\r\n\r\n"
        f"GET /through HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = await exchange(proxy, tunnel.encode())
    assert answer.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.0 200")
    assert allowed.requests[-1]["path"] == "/through"
    assert "X-Api-Key" not in allowed.requests[-1]["headers"]  # a tunnel is opaque to the proxy
    denied = await exchange(proxy, f"CONNECT 127.0.0.1:{refused.port} HTTP/1.1\r\n\r\n".encode())
    assert denied.startswith(
        f"HTTP/1.1 403 Forbidden by the kernelagent egress allowlist: 127.0.0.1:{refused.port} "
        "is not in the egress allowlist".encode()
    )
    assert refused.requests == []
    records = await egress_records(proxy, 2)
    assert [(r.method, r.decision) for r in records] == [
        ("CONNECT", "allowed"),
        ("CONNECT", "refused"),
    ]


async def test_a_broken_decision_fails_closed(
    proxy: EgressProxy,
    servers: tuple[RecordingHTTPServer, RecordingHTTPServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allowed, _ = servers

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in the allowlist")

    monkeypatch.setattr(proxy.allowlist, "decide", broken)
    answer = await exchange(proxy, f"CONNECT 127.0.0.1:{allowed.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 Egress proxy error") and b"nothing was sent" in answer
    assert allowed.requests == [] and allowed.connections == 0
    records = await egress_records(proxy, 1)
    assert records[0].decision == "refused" and "RuntimeError" in records[0].reason


async def test_garbage_and_a_stopped_proxy(proxy: EgressProxy) -> None:
    answer = await exchange(proxy, b"\x16\x03\x01\x02\x00 garbage\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    await proxy.aclose()
    with pytest.raises(OSError):
        await asyncio.open_unix_connection(str(proxy.socket_path))


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "KERNELAGENT_HOME": str(home), "NO_COLOR": "1"},
    )


def test_run_refuses_a_bad_allow_net_rule(tmp_path: Path) -> None:
    done = cli(
        "run",
        "task",
        "--allow-net",
        "https://pypi.org/simple",
        "--base-url",
        "http://127.0.0.1:9/v1",
        home=tmp_path,
    )
    assert done.returncode == 2
    assert "is a URL: it takes HOST[:PORT], e.g. --allow-net pypi.org:443" in " ".join(
        done.stderr.split()
    )


def test_run_with_allow_net_records_egress_per_cell(
    docker_available: None, tmp_path: Path, servers: tuple[RecordingHTTPServer, RecordingHTTPServer]
) -> None:
    allowed, refused = servers
    fetch = (
        "import urllib.request, urllib.error\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{allowed.port}/a', timeout=20).read())\n"
        f"try:\n    urllib.request.urlopen('http://127.0.0.1:{refused.port}/b', timeout=20)\n"
        "except urllib.error.HTTPError as error:\n    print(error.code)"
    )
    script = [ScriptedTurn.python("x = 1"), ScriptedTurn.python(fetch), ScriptedTurn.final("done")]
    with ScriptedModelServer(script) as server:
        done = cli(
            "run",
            "fetch",
            "--allow-net",
            f"127.0.0.1:{allowed.port}",
            "--base-url",
            server.base_url,
            "--model",
            "scripted-model",
            "--notebook",
            str(tmp_path / "s.ipynb"),
            "--json",
            home=tmp_path,
        )
    assert done.returncode == 0, done.stderr + done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    notebook = nbformat.read(tmp_path / "s.ipynb", as_version=4)
    first, second = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert second.outputs[0]["text"] == "b'hello /a'\n403\n"
    assert "egress" not in first.metadata.kernelagent
    audit = sorted(second.metadata.kernelagent.egress, key=lambda r: r["time"])
    assert [(r["decision"], r["port"], r["path"], r["status"]) for r in audit] == [
        ("allowed", allowed.port, "/a", 200),
        ("refused", refused.port, "/b", 403),
    ]
    log_path = Path(notebook.metadata.kernelagent.egress_log)
    assert log_path == tmp_path / "sessions" / summary["session_id"] / "egress.jsonl"
    assert sorted(json.loads(line)["decision"] for line in log_path.read_text().splitlines()) == [
        "allowed",
        "refused",
    ]
    assert refused.connections == 0
