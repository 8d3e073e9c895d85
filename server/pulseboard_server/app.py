"""The ASGI app: every route under the base path, on one port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

import pulseboard
from pulseboard.protocol import PulseboardError

from . import api, runs
from .brokers import open_broker
from .config import Settings
from .cors import CorsMiddleware
from .node import Node
from .redaction import MAX_FIELD, cap, redact
from .transports.ws import websocket_endpoint
from .watchdog import LoopWatchdog

STATIC = Path(pulseboard.__file__).parent / "static"
log = logging.getLogger("pulseboard")


class RedactFilter(logging.Filter):
    """Tokens and tickets never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and len(a) > MAX_FIELD for a in args):
            record.args = tuple(cap(a, MAX_FIELD) if isinstance(a, str) else a for a in args)  # a huge path
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter: the finished line (tracebacks included) is redacted."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class ClientNoiseFilter(logging.Filter):
    """uvicorn's sans-I/O WebSocket protocol logs two client-caused events as ERRORs:
    every denied upgrade (a 401/403/429 sent whole with `send_denial_response`) and a text
    frame that isn't UTF-8 (with a traceback; it then closes with 1007 as it should). Both
    are the client's doing, so they are kept as one INFO line, without the traceback."""

    NOISE = {
        "ASGI callable returned without completing handshake.": "websocket upgrade denied",
        "Invalid UTF-8 sequence received from client.": "websocket closed with 1007: the client sent invalid UTF-8",
    }

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.msg in self.NOISE:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = self.NOISE[record.msg], None
            record.exc_info, record.exc_text = None, None
        return True


def install_log_redaction() -> None:
    """Redact every line: on the root logger's handlers (so every logger that propagates,
    uvicorn's access log included) and on the named loggers (for handlers added later)."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "pulseboard"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
        for handler in logger.handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(RedactFilter())
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientNoiseFilter) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(ClientNoiseFilter())


async def dashboard(request: Request) -> Response:
    page = STATIC / "dashboard.html"
    if not page.exists():
        # 404, not 5xx: JupyterHub waits for a managed service until it answers non-5xx.
        return Response("dashboard bundle not built: run `npm run build` in js/", status_code=404)
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PulseboardError)
    return api.error_response(exc)


HTTP_CODES = {404: "not_found", 405: "bad_request", 400: "bad_request", 413: "too_large"}


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, in the same JSON shape as ours."""
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "bad_request")
    detail = {404: f"no such endpoint {request.url.path!r}: see docs/protocol.md",
              405: f"{request.method} is not allowed on {request.url.path!r}"}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": code, "detail": detail}, status_code=exc.status_code, headers=exc.headers)


def routes(node: Node) -> list[BaseRoute]:
    from .transports import poll, sse

    inner: list[BaseRoute] = [
        Route("/", dashboard),
        WebSocketRoute("/ws", websocket_endpoint),
        Route("/sse", sse.sse_endpoint),
        Route("/poll", poll.poll_endpoint),
        Route("/publish", api.publish, methods=["POST"]),
        Route("/ticket", api.ticket, methods=["POST"]),
        Route("/view-token", api.view_token, methods=["POST"]),
        Route("/history", api.history),
        Route("/channels", api.channels),
        Route("/runs", runs.get_runs),
        Route("/runs", runs.post_run, methods=["POST"]),
        Route("/delete", runs.delete, methods=["POST"]),
        Route("/healthz", api.healthz),
        Route("/metrics", api.metrics),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
    if node.settings.hub:
        from . import hub

        inner.append(Route("/token", hub.exchange_token, methods=["POST"]))
    prefix = node.settings.prefix
    if not prefix:
        return inner
    return [
        Route(prefix, lambda r: RedirectResponse(prefix + "/")),
        Mount(prefix, routes=inner),
    ]


def build_app(settings: Settings, node: Node | None = None) -> Starlette:
    """The app for `settings`; the broker starts with the app's lifespan."""
    install_log_redaction()
    if node is None:
        broker = open_broker(settings.broker, settings.history, max_channels=settings.max_channels)
        node = Node(settings, broker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        watchdog = LoopWatchdog(settings.loop_watchdog) if settings.loop_watchdog > 0 else None
        if watchdog is not None:
            watchdog.start()
        collector_task = None
        if settings.collect_interval > 0:
            from .collector import run_collector

            collector_task = asyncio.create_task(run_collector(node, settings.collect_interval))
        try:
            yield
        finally:
            if collector_task is not None:
                collector_task.cancel()
            await node.close_clients(1001, "server going away")
            await node.stop()
            if watchdog is not None:
                await watchdog.stop()

    app = Starlette(
        routes=routes(node),
        lifespan=lifespan,
        exception_handlers={PulseboardError: on_error, HTTPException: on_http_error},
        middleware=[Middleware(CorsMiddleware, settings=settings)],
    )
    app.state.node = node
    return app
