"""The `pulseboard` command: serve, token, publish, agent."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pulseboard.report_cli import add_report_parser, report_command

from .config import Settings, add_arguments, count, positive

log = logging.getLogger("pulseboard")


class CliError(Exception):
    """A one-line error for the user; the command exits non-zero."""


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"pulseboard: error: {msg}", file=sys.stderr)
    raise SystemExit(code)


class OneLineParser(argparse.ArgumentParser):
    """Bad options end with one line on stderr, not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="pulseboard", description="Live, authenticated metric streams for Jupyter."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    s = sub.add_parser("serve", help="run the server", description="Run the pulseboard server.")
    add_arguments(s)  # one option per Settings field (config.py)
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    t = sub.add_parser("token", help="print a signed token", description="Print a JWT signed with PULSEBOARD_SECRET.")
    t.add_argument("--sub", required=True, help="who the token is for")
    t.add_argument("--read", action="append", metavar="GLOB", help="channels it may read (default *)")
    t.add_argument("--publish", action="append", default=[], metavar="GLOB", help="channels it may publish to")
    t.add_argument("--ttl", type=count, default=3600, help="seconds until it expires (3600)")
    t.add_argument("--out", metavar="FILE", help="write it to FILE (atomically, owner-only) instead of printing it")
    t.add_argument("--renew", action="store_true",
                   help="with --out: write a fresh token every ttl/2 seconds until stopped, for "
                        "long runs reading PULSEBOARD_TOKEN_FILE")

    u = sub.add_parser("publish", help="publish one message", description="Publish one message over HTTP.")
    u.add_argument("channel")
    u.add_argument("json", nargs="?", help="the message's data, a JSON object (none: one per JSON line on stdin)")
    u.add_argument("--url", default=None, help="server URL (PULSEBOARD_URL)")
    u.add_argument("--token", default=None, help="token (PULSEBOARD_TOKEN)")

    d = sub.add_parser("delete", help="delete channels' data", description=(
        "Remove channels' messages (and the run record of a run's channel); needs publish rights on them."))
    d.add_argument("channel", nargs="+")
    d.add_argument("--url", default=None, help="server URL (PULSEBOARD_URL)")
    d.add_argument("--token", default=None, help="token (PULSEBOARD_TOKEN)")

    a = sub.add_parser("agent", help="run the host collector elsewhere",
                       description="Publish this host's metrics to a broker or a server.")
    where = a.add_mutually_exclusive_group(required=True)
    where.add_argument("--broker", help="publish straight into redis://...")
    where.add_argument("--url", help="publish through a server's HTTP API (token from PULSEBOARD_TOKEN)")
    a.add_argument("--interval", type=positive, default=1.0, help="seconds between samples (1.0)")
    a.add_argument("--channel", default=None, help="channel (sys.<hostname>)")
    a.add_argument("--history", type=count, default=1000, help="messages kept per channel (1000)")
    add_report_parser(sub)  # pulseboard report (widget/pulseboard/report_cli.py)
    w = sub.add_parser("watch", help="publish TensorBoard runs live",
                       description="Follow the TensorBoard event files under LOGDIR and publish each run's "
                                   "scalars to channel PREFIX.<run> (needs pulseboard[tensorboard]).")
    w.add_argument("logdir")
    w.add_argument("--prefix", default="tb", help="channel prefix (tb)")
    w.add_argument("--url", default=None, help="server URL (PULSEBOARD_URL)")
    w.add_argument("--token", default=None, help="token (PULSEBOARD_TOKEN)")
    w.add_argument("--state", default=None, help="where the watcher keeps its place (in the data dir)")
    w.add_argument("--poll", type=positive, default=0.2, help="seconds between looks at the files (0.2)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve_command(args)
        elif args.command == "token":
            token_command(args)
        elif args.command == "publish":
            publish_command(args)
        elif args.command == "delete":
            delete_command(args)
        elif args.command == "agent":
            agent_command(args)
        elif args.command == "report":
            report_command(args)
        elif args.command == "watch":
            watch_command(args)
    except CliError as e:
        fail(str(e))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


# --- token / publish / watch ----------------------------------------------------------


def watch_command(args: argparse.Namespace) -> None:
    try:
        from pulseboard.tbwatch import WatchError
        from pulseboard.tbwatch import main as watch_main
    except ImportError as e:  # the tensorboard extra is missing: the message says what to install
        raise CliError(str(e)) from None
    try:
        code = watch_main(args.logdir, args.prefix, args.url, args.token, args.state, args.poll)
    except WatchError as e:
        raise CliError(str(e)) from None
    raise SystemExit(code)


def token_command(args: argparse.Namespace) -> None:
    from .auth import mint_token

    secret = os.environ.get("PULSEBOARD_SECRET")
    if not secret:
        raise CliError("set PULSEBOARD_SECRET to the server's secret first")
    if args.renew and not args.out:
        raise CliError("--renew needs --out FILE (the file a long run reads as PULSEBOARD_TOKEN_FILE)")
    if args.ttl < 2:
        raise CliError("--ttl must be at least 2 seconds")

    def mint() -> str:
        return mint_token(secret, args.sub, args.read or ["*"], args.publish, args.ttl)

    if not args.out:
        print(mint())
        return
    renew_token_file(args.out, mint, args.ttl, forever=args.renew)


def renew_token_file(path: str, mint: Callable[[], str], ttl: float, forever: bool) -> None:
    """`token --out FILE [--renew]`: one write, or rewrites until SIGTERM/SIGINT."""
    import threading

    from pulseboard.tokenfile import rotate, write_token

    try:
        if not forever:
            write_token(path, mint())
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print(f"pulseboard: renewing the token in {path} every {ttl / 2:g} s until stopped", flush=True)
        rotate(path, mint, ttl, stop)
    except OSError as e:
        raise CliError(f"cannot write the token to {path}: {e.strerror or e}") from None


def publish_command(args: argparse.Namespace) -> None:
    from pulseboard.publish import PublishError, publish

    if args.json is None:  # JSON lines on stdin, through the background sender (publish_lines)
        from pulseboard.publish_lines import publish_lines

        try:
            raise SystemExit(publish_lines(args.channel, args.url, args.token, 30.0))
        except PublishError as e:
            raise CliError(e.detail) from None
    try:
        data = json.loads(args.json)
    except ValueError:
        raise CliError("JSON argument is not valid JSON") from None
    if not isinstance(data, dict):
        raise CliError('JSON argument must be an object, e.g. \'{"depth": 4}\'')
    try:
        seq = publish(args.channel, data, url=args.url, token=args.token)
    except PublishError as e:
        raise CliError(str(e)) from None
    print(seq)


def delete_command(args: argparse.Namespace) -> None:
    from pulseboard.publish import PublishError
    from pulseboard.tracking import delete

    try:
        deleted = delete(*args.channel, url=args.url, token=args.token)
    except PublishError as e:
        raise CliError(str(e)) from None
    gone = set(deleted)
    for ch in args.channel:
        print(f"deleted {ch}" if ch in gone else f"nothing to delete in {ch}")


# --- agent -------------------------------------------------------------------------


def agent_command(args: argparse.Namespace) -> None:
    from .collector import collect, host_channel

    channel = args.channel or host_channel()
    interval = args.interval or 1.0

    async def run() -> None:
        if args.broker:
            from .brokers import open_broker

            if args.broker.startswith("memory:"):
                raise CliError("an agent needs a shared broker (redis://...) or --url of a server")

            try:
                broker = open_broker(args.broker, args.history)
                await broker.start(lambda e: None, lambda c, e, s: None)
            except Exception as e:  # redis errors are not OSErrors: any failure here is one line
                raise CliError(f"cannot reach broker {args.broker}: {e}") from None

            async def pub(ch: str, data: dict[str, Any]) -> object:
                return await broker.publish(ch, data, time.time())
        else:
            from pulseboard.publish import Publisher, PublishError

            try:
                publisher = Publisher(url=args.url)
            except PublishError as e:
                raise CliError(e.detail) from None

            async def pub(ch: str, data: dict[str, Any]) -> object:
                return await asyncio.to_thread(publisher.publish, ch, data)

        print(f"pulseboard agent: publishing {channel} every {interval}s", file=sys.stderr)
        await collect(pub, interval, channel)

    from pulseboard.protocol import PulseboardError

    try:
        asyncio.run(run())
    except PulseboardError as e:
        raise CliError(f"agent stopped: {e.detail}") from None


# --- serve -------------------------------------------------------------------------


def hub_base_path(args: argparse.Namespace) -> str:
    """--base-path; in hub mode it defaults to JupyterHub's JUPYTERHUB_SERVICE_PREFIX."""
    base: str = args.base_path
    if args.hub and base == "/" and os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
        base = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    return base if base.startswith("/") else "/" + base


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from `serve`'s options: every option whose dest is a Settings field name."""
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)})
    settings.base_path = hub_base_path(args)
    settings.secret = os.environ.get("PULSEBOARD_SECRET") or None
    if not settings.loop_watchdog:
        try:
            settings.loop_watchdog = max(0.0, float(os.environ.get("PULSEBOARD_LOOP_WATCHDOG") or 0))
        except ValueError:
            raise CliError("PULSEBOARD_LOOP_WATCHDOG must be seconds (a number)") from None
    if args.public_key:
        try:
            with open(args.public_key) as f:
                settings.public_key = f.read()
        except OSError as e:
            raise CliError(f"cannot read --public-key {args.public_key}: {e.strerror}") from None
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            load_pem_public_key(settings.public_key.encode())
        except ValueError:
            raise CliError(f"--public-key {args.public_key} is not a PEM public key (RSA or EC)") from None
    return settings


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} on {host} is in use: pick another with --port") from None
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve_command(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings_from(args)
    printed_token = None
    if settings.hub:  # hub mode: no secret or a bad policy stops the start (never a throwaway key)
        from pulseboard.protocol import PulseboardError

        from .hub import check_startup

        try:
            check_startup(settings.secret)
        except PulseboardError as e:
            raise CliError(e.detail) from None
    if settings.jwks_url and urlsplit(settings.jwks_url).scheme not in ("http", "https"):
        raise CliError(f"--jwks-url must be an http:// or https:// URL, not {settings.jwks_url[:80]!r}")
    if not (settings.secret or settings.public_key or settings.jwks_url or settings.hub):
        from .auth import ephemeral_secret, mint_token

        settings.secret = ephemeral_secret()
        printed_token = mint_token(settings.secret, "dashboard", ["*"], [], ttl=12 * 3600)
    asyncio.run(serve(settings, args.log_level, printed_token))


async def serve(settings: Settings, log_level: str = "info", printed_token: str | None = None) -> None:
    import uvicorn

    from .app import build_app, install_log_redaction
    from .brokers import open_broker
    from .brokers.base import store_options
    from .brokers.sqlite_store import StoreError
    from .node import Node
    from .timeouts import header_timeout_protocol
    from .transports.ws import WsProtocol

    install_log_redaction()
    sock = bind(settings.host, settings.port)
    settings.port = sock.getsockname()[1]
    try:
        try:
            broker = open_broker(settings.broker, settings.history, max_channels=settings.max_channels,
                                 **store_options(settings))
        except (ValueError, ImportError) as e:
            raise CliError(str(e)) from None
        node = Node(settings, broker)
        try:
            await node.start()
        except StoreError as e:
            raise CliError(e.detail) from None  # the store's own line: in use, damaged, unreadable
        except Exception as e:
            raise CliError(f"cannot reach broker {settings.broker}: {e}") from None
    except CliError as e:
        from . import explain

        if not explain.wanted():
            raise
        print(f"pulseboard: error: {e} (answering 503 with this until stopped)", file=sys.stderr, flush=True)
        await explain.explain(sock, str(e))
        raise SystemExit(2) from None
    app = build_app(settings, node)
    config = uvicorn.Config(
        app,
        http=header_timeout_protocol(settings.header_timeout),  # slow headers must not hold a slot (slowloris)
        ws=WsProtocol,  # uvicorn's websockets-sansio, deflate without context takeover
        ws_max_size=max(4 * settings.max_message_size, 1 << 16),
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_interval,
        log_level=log_level,
        log_config=None,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = GracefulServer(config, node)
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)  # a URL a browser opens
    host = f"[{shown}]" if ":" in shown else shown
    base = f"http://{host}:{settings.port}{settings.prefix}/"
    if printed_token:
        print(f"pulseboard: dashboard at {base}#token={printed_token}", flush=True)
    else:
        print(f"pulseboard: serving on {base}", flush=True)
    await server.serve(sockets=[sock])


class GracefulServer:
    """uvicorn's server, but SIGTERM/SIGINT close every client with 1001, then exit 0."""

    def __init__(self, config: Any, node: Any) -> None:
        import uvicorn

        node_ref = node

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                if self.should_exit or getattr(self, "_closing_clients", False):
                    self.force_exit = sig == signal.SIGINT and self.should_exit
                    self.should_exit = True
                    return
                self._closing_clients = True
                loop: asyncio.AbstractEventLoop = getattr(self, "_pb_loop")  # noqa: B009

                def begin() -> None:
                    task = loop.create_task(node_ref.close_clients(1001, "server going away"))
                    task.add_done_callback(lambda _: setattr(self, "should_exit", True))
                    self._pb_task = task

                loop.call_soon_threadsafe(begin)

        self._server = _Server(config)

    async def serve(self, sockets: list[socket.socket]) -> None:
        self._server._pb_loop = asyncio.get_running_loop()  # type: ignore[attr-defined]
        await self._server.serve(sockets=sockets)
        if self._server.started is False:
            raise CliError("server failed to start")
