"""The header read timeout (against slowloris), as uvicorn's h11 protocol plus one timer.

uvicorn closes idle keep-alive connections, but a client that sends its request line
and headers a byte at a time keeps a connection (and its buffers) forever. Here every
request must finish its headers within `header_timeout` seconds of the connection
opening or of the previous response ending; otherwise the connection is closed.
WebSocket upgrades hand the transport to another protocol and are not affected, except
that a handshake uvicorn's WebSocket protocol refuses is answered and closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("pulseboard.limits")


def header_timeout_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class, with requests' headers due within `timeout` seconds."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            super().handle_websocket_upgrade(event)
            # uvicorn's sans-I/O WebSocket protocol leaves a refused handshake (a header line
            # over websockets' 8 KiB limit: 431) unsent and the connection open forever.
            proto = self.transport.get_protocol()
            conn = getattr(proto, "conn", None)
            if getattr(conn, "handshake_exc", None) is not None and not self.transport.is_closing():
                self.transport.write(b"".join(conn.data_to_send()))  # type: ignore[union-attr]
                self.transport.close()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            if timeout > 0 and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(timeout, self._header_deadline)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            if self.conn.their_state is not h11.IDLE:
                return  # the headers arrived; the body has its own timeout
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a response is still running (pipelined requests wait for it)
            log.info("closing a connection that did not send its headers within %g s", timeout)
            self.transport.close()

    return HeaderTimeoutProtocol
