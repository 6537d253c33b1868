"""HTTP and HTTPS servers on the host's 127.0.0.1 that record what reaches them, for the
egress tests (tests/test_egress.py and tests/adversarial/test_egress.py)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

from kernelagent.sandbox.egress_proxy import EgressProxy, EgressRecord


class RecordingHTTPServer:
    """Answers every GET with ``hello <path>`` and keeps each request's path and headers."""

    def __init__(self, tls_directory: Path | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name for it
                owner.requests.append({"path": self.path, "headers": dict(self.headers.items())})
                body = f"hello {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                owner.connections += 1
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.certificate: Path | None = None
        if tls_directory is not None:
            self.certificate = self_signed_certificate(tls_directory)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.certificate, tls_directory / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(directory: Path) -> Path:
    """A certificate for 127.0.0.1 (made with the openssl command) and its key."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate = directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(directory / "key.pem"),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    return certificate


async def egress_records(
    proxy: EgressProxy, count: int, timeout: float = 3.0
) -> list[EgressRecord]:
    """The proxy's records once ``count`` requests have ended (a record is published when
    its connection ends), in the order they started; fewer if ``timeout`` passes first."""
    enough = asyncio.Event()

    def on_record(_: EgressRecord) -> None:
        if len(proxy.records) >= count:
            enough.set()

    proxy.add_listener(on_record)
    try:
        if len(proxy.records) < count:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(enough.wait(), timeout)
    finally:
        proxy.remove_listener(on_record)
    return sorted(proxy.records, key=lambda record: record.time)
