"""Network: the sandbox has its own network namespace with nothing but ``lo``.

No test here sends a packet anywhere but loopback: name resolution is attempted only
after the probe has confirmed there is no route out of the container.
"""

from __future__ import annotations

import select
import socket
import threading
import uuid

from kernelagent.sandbox.sandbox import Sandbox
from tests.adversarial._helpers import probe
from tests.adversarial.conftest import Record


async def test_only_loopback_interface(sandbox: Sandbox, record: Record) -> None:
    """List network interfaces and routes from inside"""
    record(expected="only `lo`; no IPv4 or IPv6 route leaves the container")
    out = await probe(
        sandbox,
        """
        import os
        out['interfaces'] = sorted(os.listdir('/sys/class/net'))
        out['v4_routes'] = open('/proc/net/route').read().splitlines()[1:]
        out['v6_routes'] = [l.split()[-1] for l in open('/proc/net/ipv6_route').read().splitlines()]
        """,
    )
    non_lo_v6 = [dev for dev in out["v6_routes"] if dev != "lo"]
    record(
        observed=f"interfaces={out['interfaces']}, IPv4 routes={len(out['v4_routes'])}, "
        f"non-lo IPv6 routes={len(non_lo_v6)}"
    )
    assert out["interfaces"] == ["lo"]
    assert out["v4_routes"] == []
    assert non_lo_v6 == []


async def test_host_loopback_listener_unreachable(sandbox: Sandbox, record: Record) -> None:
    """Connect to a listener the test opens on the host's 127.0.0.1:PORT"""
    record(
        expected="refused: 127.0.0.1 inside is the container's own loopback; a listener the "
        "sandbox opens on the same port is what it reaches; the host listener accepts nothing"
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([listener], [], [], 0.1)
            if ready:
                accepted.append(listener.accept())

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        out = await probe(
            sandbox,
            f"""
            import socket
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=3).close()
                out['host_port'] = 'connected'
            except OSError as e:
                out['host_port'] = f'{{type(e).__name__}}: {{e}}'
            own = socket.socket(); own.bind(('127.0.0.1', {port})); own.listen()
            client = socket.create_connection(('127.0.0.1', {port}), timeout=3)
            peer, _ = own.accept()
            client.sendall(b'ping'); out['own_listener_got'] = peer.recv(4).decode()
            for s in (client, peer, own): s.close()
            """,
        )
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
    record(
        observed=f"connect 127.0.0.1:{port} -> {out['host_port']}; a listener inside on the "
        f"same port received {out['own_listener_got']!r}; host listener accepted {len(accepted)}"
    )
    assert out["host_port"] != "connected"
    assert out["own_listener_got"] == "ping"
    assert accepted == []


async def test_host_abstract_unix_socket_unreachable(sandbox: Sandbox, record: Record) -> None:
    """Connect to an abstract unix socket the host listens on (the containerd-shim attack)"""
    record(expected="refused: abstract unix sockets belong to the network namespace")
    name = f"kernelagent-adversarial-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen()
    listener.setblocking(False)
    try:
        out = await probe(
            sandbox,
            f"""
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect('\\0{name}')
                out['result'] = 'connected'
            except OSError as e:
                out['result'] = f'{{type(e).__name__}}: {{e}}'
            """,
        )
        try:
            listener.accept()
            host_accepted = True
        except BlockingIOError:
            host_accepted = False
    finally:
        listener.close()
    record(observed=f"connect @{name[:28]}... -> {out['result']}; host accepted={host_accepted}")
    assert out["result"] != "connected"
    assert not host_accepted


async def test_name_resolution_fails(sandbox: Sandbox, record: Record) -> None:
    """Resolve a public name (only after checking that no route leaves the sandbox)"""
    record(expected="resolution fails (no interface to reach any resolver); no packet leaves")
    out = await probe(
        sandbox,
        """
        import os, socket
        routed = open('/proc/net/route').read().splitlines()[1:]
        interfaces = sorted(os.listdir('/sys/class/net'))
        out['precondition'] = interfaces == ['lo'] and not routed
        out['nameservers'] = [l.split()[1] for l in open('/etc/resolv.conf')
                              if l.startswith('nameserver')]
        if out['precondition']:
            try:
                out['resolved'] = socket.getaddrinfo('pypi.org', 443)[0][4][0]
            except OSError as e:
                out['resolved'] = None
                out['error'] = f'{type(e).__name__}: {e}'
        """,
    )
    record(
        observed=f"getaddrinfo('pypi.org') -> {out.get('error', out.get('resolved'))} "
        f"(resolv.conf lists {len(out['nameservers'])} nameserver(s), unreachable)"
        if out["precondition"]
        else "NOT ATTEMPTED: the container has a route out (no-route precondition failed)"
    )
    assert out["precondition"], "the container has an interface or route besides lo"
    assert out["resolved"] is None


async def test_raw_sockets_refused(sandbox: Sandbox, record: Record) -> None:
    """Open raw IP and packet sockets (spoofing, sniffing)"""
    record(expected="PermissionError: no CAP_NET_RAW (or the address family is absent)")
    out = await probe(
        sandbox,
        """
        import socket
        for name, args in {
            'AF_INET/SOCK_RAW': (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
            'AF_INET6/SOCK_RAW': (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
            'AF_PACKET/SOCK_RAW': (socket.AF_PACKET, socket.SOCK_RAW, 0),
        }.items():
            try:
                socket.socket(*args).close()
                out[name] = 'opened'
            except OSError as e:
                out[name] = f'{type(e).__name__}: {e.strerror}'
        """,
    )
    record(observed=", ".join(f"{k} -> {v}" for k, v in out.items()))
    refused = ("PermissionError", "OSError: Address family not supported")
    assert all(value.startswith(refused) for value in out.values()), out
    assert out["AF_INET/SOCK_RAW"].startswith("PermissionError")
