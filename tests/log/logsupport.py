"""Helpers for the log() tests: reading a whole channel back, and a proxy that loses answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pulseboard.discovery import token_expiry
from support import PULSEBOARD, SECRET, token

TTL = 3  # seconds a rotated token lives in the long-run tests (an hour by default)


def get_json(url: str, path: str) -> Any:
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token()})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def top_seq(url: str, ch: str) -> int:
    """The channel's top seq (0 before its first message or while the server is down)."""
    try:
        return int(get_json(url, f"/history?ch={ch}&limit=1")["seq"])
    except (urllib.error.URLError, OSError):
        return 0


def read_all(url: str, ch: str, page: int = 1000) -> list[dict[str, Any]]:
    """Every envelope the channel holds, oldest first."""
    out: list[dict[str, Any]] = []
    while True:
        msgs = get_json(url, f"/history?ch={ch}&since={out[-1]['seq'] if out else 0}&limit={page}")["msgs"]
        if not msgs:
            return out
        out.extend(msgs)


class LosingProxy:
    """A TCP proxy to 127.0.0.1:`upstream`. While `drop` > 0, the next answer the server sends
    (so the server has processed the request) is thrown away and both connections are closed."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.drop = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if answers:
                    with self._lock:
                        lose = self.drop > 0
                        if lose:
                            self.drop -= 1
                            self.dropped += 1
                    if lose:
                        break
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._sock.close()


class Rotator:
    """`pulseboard token --out FILE --renew` as a user runs it (beside the server, holding the secret)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rotator:
        env = dict(os.environ, PULSEBOARD_SECRET=SECRET)
        self.proc = subprocess.Popen(
            [*PULSEBOARD, "token", "--sub", "trainer", "--read", "long.*", "--publish", "long.*",
             "--ttl", str(TTL), "--out", str(self.path), "--renew"], env=env, stdout=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=15) == 0  # stops cleanly on SIGTERM
        self.proc = None

    def exp(self) -> float:
        """The `exp` of the token in the file now (0 before the first write)."""
        try:
            return token_expiry(self.path.read_text().strip()) or 0.0
        except OSError:
            return 0.0
