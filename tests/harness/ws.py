"""Small helpers for talking to a real server over WebSocket and HTTP in tests."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from harness.servers import ServerProcess
from harness.tokens import token


async def open_ws(server: ServerProcess, tok: str | None = None, **kwargs: Any) -> ClientConnection:
    tok = tok if tok is not None else token()
    headers = kwargs.pop("additional_headers", {}) or {}
    headers.setdefault("Authorization", f"Bearer {tok}")
    return await connect(server.ws_url, additional_headers=headers, subprotocols=["pulseboard.v1"],  # type: ignore[list-item]
                         max_size=None, open_timeout=10, **kwargs)


async def recv_json(ws: ClientConnection, timeout: float = 10.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_op(ws: ClientConnection, op: str, timeout: float = 10.0) -> dict[str, Any]:
    """Read frames until a control op named `op` arrives; return it."""
    while True:
        msg = await recv_json(ws, timeout)
        if isinstance(msg, dict) and msg.get("op") == op:
            return msg


async def recv_envelopes(ws: ClientConnection, n: int, timeout: float = 10.0,
                         ops: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Read frames until `n` envelopes have arrived; control ops go to `ops`."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = await recv_json(ws, timeout)
        if isinstance(msg, list):
            out.extend(msg)
        elif ops is not None:
            ops.append(msg)
    return out


async def subscribe(ws: ClientConnection, ch: dict[str, Any]) -> list[dict[str, Any]]:
    """Send a subscribe op; return the `subscribed` ops (one per channel)."""
    await ws.send(json.dumps({"op": "subscribe", "ch": ch}))
    got = []
    for _ in ch:
        got.append(await recv_op(ws, "subscribed"))
    return got


def publish(server: ServerProcess, ch: str, n: int, start: int = 0, tok: str | None = None,
            field: str = "i") -> list[int]:
    """Publish `n` messages {field: start..start+n-1} in one POST; return their seqs."""
    body = [{"ch": ch, "data": {field: i}} for i in range(start, start + n)]
    r = httpx.post(server.url + "/publish", json=body,
                   headers={"Authorization": f"Bearer {tok or token()}"}, timeout=30)
    r.raise_for_status()
    seqs: list[int] = r.json()["seqs"]
    return seqs


CHROMIUM_DEFLATE = "permessage-deflate; client_max_window_bits"  # what Chromium offers, byte for byte


class WireClient:
    """A WebSocket client on a raw socket (websockets' sans-I/O protocol) that sees the wire:
    it counts the bytes received, may stop reading (a stalled client), and offers
    permessage-deflate exactly as Chromium does when `deflate` is set."""

    def __init__(self, srv: ServerProcess, deflate: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.port))
        exts = [ClientPerMessageDeflateFactory(client_max_window_bits=True)] if deflate else None
        self.proto = ClientProtocol(parse_uri(srv.ws_url), extensions=exts)
        request = self.proto.connect()
        if deflate:
            assert request.headers["Sec-WebSocket-Extensions"] == CHROMIUM_DEFLATE
        request.headers["Authorization"] = f"Bearer {token()}"
        self.proto.send_request(request)
        self.flush()
        self.sock.settimeout(10)
        events: list[object] = []
        while self.proto.handshake_exc is None and self.proto.state.name == "CONNECTING":
            self.proto.receive_data(self.sock.recv(4096))
            events.extend(self.proto.events_received())
        assert self.proto.state.name == "OPEN", self.proto.handshake_exc
        self.response: Response = next(e for e in events if isinstance(e, Response))
        self.wire = 0  # bytes received after the handshake (roughly: the first read may hold frames)
        self._texts = [bytes(e.data).decode() for e in events if isinstance(e, Frame) and e.opcode is Opcode.TEXT]

    def flush(self) -> None:
        for chunk in self.proto.data_to_send():
            try:
                self.sock.sendall(chunk)
            except OSError:  # the server may already have dropped us
                return

    def _read(self) -> list[Frame]:
        data = self.sock.recv(65536)
        if not data:
            self.proto.receive_eof()
        else:
            self.wire += len(data)
            self.proto.receive_data(data)
        self.flush()
        events = self.proto.events_received()
        if not data and not events:
            raise AssertionError("the server closed the connection")
        return [e for e in events if isinstance(e, Frame)]

    def read_all(self, timeout: float = 20.0) -> list[object]:
        """Read until the server's close frame; return the events the protocol parsed."""
        self.sock.settimeout(timeout)
        events: list[object] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                raise AssertionError("server reset the connection instead of closing it") from None
            if not data:
                self.proto.receive_eof()
            else:
                self.proto.receive_data(data)
            events.extend(self.proto.events_received())
            self.flush()
            if self.proto.close_rcvd is not None or not data:
                return events

    def recv_text(self, timeout: float = 10.0) -> str:
        """The next text message, decompressed if it came compressed."""
        self.sock.settimeout(timeout)
        while not self._texts:
            self._texts.extend(bytes(f.data).decode() for f in self._read() if f.opcode is Opcode.TEXT)
        return self._texts.pop(0)

    def recv_envelopes(self, n: int) -> tuple[list[dict[str, Any]], int]:
        """Read until `n` envelopes have arrived; return them and the text bytes they came in."""
        out: list[dict[str, Any]] = []
        size = 0
        while len(out) < n:
            text = self.recv_text()
            msg = json.loads(text)
            if isinstance(msg, list):
                out.extend(msg)
                size += len(text.encode())
        return out, size

    def recv_op(self, op: str) -> dict[str, Any]:
        while True:
            msg = json.loads(self.recv_text())
            if isinstance(msg, dict) and msg.get("op") == op:
                return msg

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self.flush()

    def send_whole(self, data: bytes, text: bool = True) -> None:
        """Send one frame (`data` as is: it need not be UTF-8) and fail if the server cut the
        connection before taking all of it (a reset, where `send_text` carries on)."""
        if text:
            self.proto.send_text(data)
        else:
            self.proto.send_binary(data)
        for chunk in self.proto.data_to_send():
            try:
                self.sock.sendall(chunk)
            except OSError as e:
                raise AssertionError(f"the server cut the connection while the frame was sent: {e!r}") from None

    def read_close(self, timeout: float = 20.0) -> tuple[int, str]:
        """Read to the end of the stream: the (code, reason) of the server's close frame, which
        must come before the server's FIN, and no reset at any point."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                got = "after" if self.proto.close_rcvd is not None else "before"
                raise AssertionError(f"the server reset the connection {got} its close frame") from None
            if not data:
                break
            self.proto.receive_data(data)
            self.proto.events_received()
            self.flush()  # the client's answering close frame
        assert self.proto.close_rcvd is not None, "the server closed the connection without a close frame"
        return self.proto.close_rcvd.code, self.proto.close_rcvd.reason

    def close(self) -> None:
        self.sock.close()
