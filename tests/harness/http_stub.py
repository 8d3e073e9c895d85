"""Small real HTTP servers for clients under test: one that answers fixed JSON and records
every request's headers, and one that redirects every request to another URL.

They stand in for the far side of a client (a JupyterHub, another host), not for anything
pulseboard ships.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Stub:
    """Answers every request with `status` and `body` (JSON); keeps (method, path, headers)."""

    def __init__(self, body: Any = None, status: int = 200, location: str | None = None) -> None:
        self.body, self.status, self.location = body, status, location
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.gate: threading.Event | None = None  # set: every answer waits for it
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stub.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if stub.gate is not None:
                    stub.gate.wait(30)
                raw = json.dumps(stub.body).encode() if stub.body is not None else b""
                self.send_response(stub.status)
                if stub.location is not None:
                    self.send_header("Location", stub.location + self.path)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> Stub:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorizations(self) -> list[str]:
        return [h["authorization"] for _, _, h in self.seen if "authorization" in h]


@contextmanager
def stub(body: Any = None, status: int = 200, location: str | None = None) -> Iterator[Stub]:
    s = Stub(body, status, location).start()
    try:
        yield s
    finally:
        s.stop()


@contextmanager
def redirect_to_another_port(code: int, body: Any = None) -> Iterator[tuple[Stub, Stub]]:
    """(redirector, recorder): every request to the redirector gets `code` with a Location on
    the recorder's port (another origin), same path; the recorder answers `body`."""
    with stub(body) as recorder, stub(None, code, location=recorder.url) as redirector:
        yield redirector, recorder
