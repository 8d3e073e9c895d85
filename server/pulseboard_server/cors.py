"""CORS for the HTTP endpoints, so pages on allowed origins can use sse, poll, ticket and publish.

WebSockets aren't subject to CORS, but EventSource and fetch are: a chart in a
JupyterLab on another origin needs these headers to read a fallback transport.
The origins are the ones `origin_allowed` lets in (the same rule as the WebSocket).
No cookies are used, so credentials are never allowed.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        if not origin or not origin_allowed(origin, headers.get("host"), self.settings):
            await self.app(scope, receive, send)  # same-origin, or refused by the endpoint
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
