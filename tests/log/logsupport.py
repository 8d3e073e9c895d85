"""For the log() tests: a proxy that loses answers (reading channels back: harness.channels)."""

from __future__ import annotations

import socket
import threading


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
