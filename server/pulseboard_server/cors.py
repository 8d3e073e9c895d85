"""CORS for the HTTP endpoints, so pages on allowed origins can use sse, poll, ticket and publish.

WebSockets aren't subject to CORS, but EventSource and fetch are: a chart in a
JupyterLab on another origin needs these headers to read a fallback transport.
The origins are the ones `origin_allowed` lets in (the same rule as the WebSocket);
a request from any other origin gets 403 here, whatever its path.
No cookies are used, so credentials are never allowed.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pulseboard.protocol import FORBIDDEN

from .auth import origin_allowed
from .config import Settings

ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Cache-Control"
ALLOW_METHODS = "GET, POST, OPTIONS"


class CorsMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if not origin:
            await self.app(scope, receive, send)  # not a cross-origin browser request
            return
        if not origin_allowed(origin, headers.get("host"), self.settings):
            # One origin rule for every path (`token` in hub mode too): 403, no CORS headers.
            refusal = JSONResponse(
                {"error": FORBIDDEN, "detail": "origin not allowed: see --allowed-origin"}, status_code=403
            )
            await refusal(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await send({"type": "http.response.start", "status": 204, "headers": [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
                (b"vary", b"Origin"),
            ]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)
