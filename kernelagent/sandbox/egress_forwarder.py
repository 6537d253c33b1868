"""Runs INSIDE the sandbox: relays 127.0.0.1:PORT to the host's egress proxy socket.

    python3 egress_forwarder.py SOCKET PORT -- KERNEL COMMAND...

The container has no network interface, so this is its only way out, and only to the
host proxy, which decides every request. The script binds the port, creates the user
site directory (so ``pip install --user`` packages import without a restart), forks a
child that serves the relay, and ``exec``s the kernel command in the parent, so the
kernel stays the direct child of the container's init (signals reach it as before).

Standard library only, Python >= 3.8: the sandbox image's own python3 runs it. The
host copies it into the kernel's runtime directory, mounted read-only.
"""

import asyncio
import contextlib
import os
import site
import socket
import sys

_DOWN_TEXT = b"kernelagent: the host's egress proxy is not running: this sandbox has no network.\n"
PROXY_DOWN = (
    b"HTTP/1.1 502 Egress proxy unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_DOWN_TEXT), _DOWN_TEXT)
)


async def relay(source, sink):
    try:
        while True:
            data = await source.read(65536)
            if not data:
                break
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        pass


async def handle(socket_path, client_reader, client_writer):
    try:
        proxy_reader, proxy_writer = await asyncio.open_unix_connection(socket_path)
    except OSError:
        client_writer.write(PROXY_DOWN)
        with contextlib.suppress(OSError):
            await client_writer.drain()
        client_writer.close()
        return
    await asyncio.gather(relay(client_reader, proxy_writer), relay(proxy_reader, client_writer))
    proxy_writer.close()
    client_writer.close()


async def serve(listener, socket_path):
    server = await asyncio.start_server(lambda r, w: handle(socket_path, r, w), sock=listener)
    async with server:
        await server.serve_forever()


def main(argv):
    if len(argv) < 4 or argv[2] != "--":
        print("usage: egress_forwarder.py SOCKET PORT -- COMMAND...", file=sys.stderr)
        return 2
    socket_path, port, command = argv[0], int(argv[1]), argv[3:]
    with contextlib.suppress(OSError):  # exists before the kernel starts: site puts it on sys.path
        os.makedirs(site.getusersitepackages(), exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    if os.fork() == 0:
        os.setsid()  # interrupts for the kernel's process group do not reach the relay
        devnull = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(devnull, stream)
        try:
            asyncio.run(serve(listener, socket_path))
        finally:
            os._exit(0)
    listener.close()
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
