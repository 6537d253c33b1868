#!/usr/bin/env python3
"""A stand-in for llama-server (and for ``python -m llama_cpp.server``) in service tests.

Parses the flags the model service passes (``--port``, ``--alias`` or ``--model_alias``),
answers ``GET /health``, ``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed or
not) on 127.0.0.1 with ``$FAKE_REPLY`` (or the n-th of the JSON list ``$FAKE_REPLIES``, in
turn) after ``$FAKE_DELAY`` seconds, and reports the most
requests it ever had in flight at ``GET /max_in_flight``. ``$FAKE_EXIT_CODE`` makes it
print a message and exit at once instead (a server that cannot load its model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
in_flight = 0
max_in_flight = 0
replies_sent = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    alias = "fake"

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, payload: object, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json({"status": "ok"})
        elif self.path.startswith("/v1/models"):
            self._json(
                {
                    "object": "list",
                    "data": [{"id": self.alias, "object": "model", "owned_by": "fake"}],
                }
            )
        elif self.path == "/max_in_flight":
            self._json({"max_in_flight": max_in_flight})
        else:
            self._json({"error": "not found"}, 404)

    def do_POST(self) -> None:
        global in_flight, max_in_flight
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with lock:
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
        try:
            time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
            self._reply(body)
        finally:
            with lock:
                in_flight -= 1

    def _reply(self, body: dict[str, object]) -> None:
        global replies_sent
        text = os.environ.get("FAKE_REPLY", "FINAL ANSWER: 42")
        if os.environ.get("FAKE_REPLIES"):
            replies = json.loads(os.environ["FAKE_REPLIES"])
            with lock:
                text, replies_sent = replies[replies_sent % len(replies)], replies_sent + 1
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        base = {"id": "chatcmpl-1", "created": 0, "model": self.alias}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            self._json(
                {
                    **base,
                    "object": "chat.completion",
                    "usage": usage,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )
            return
        chunks = [
            {
                **base,
                "object": "chat.completion.chunk",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": text},
                        "finish_reason": None,
                    }
                ],
            },
            {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
            {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage},
        ]
        payload = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        data = payload.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", "--model_alias", dest="alias", default="fake")
    known, _ = parser.parse_known_args(argv)
    if os.environ.get("FAKE_EXIT_CODE"):
        print("error: failed to load model (fake)", flush=True)
        return int(os.environ["FAKE_EXIT_CODE"])
    Handler.alias = known.alias
    server = ThreadingHTTPServer((known.host, known.port), Handler)
    print(f"fake model server on {known.host}:{known.port} (argv: {' '.join(argv)})", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
