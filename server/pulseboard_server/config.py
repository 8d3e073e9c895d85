"""Server settings: every default lives here; `pulseboard serve`'s options and the docs table are built from it.

A new setting is one field with `opt(...)`: its default, its help text (which the
CLI and docs/configuration.md show) and, if needed, how its option is parsed.
`opt(..., cli=False)` keeps a field off the command line; `hidden=True` keeps it out
of `--help` and the docs (knobs for tests and benchmarks).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from .brokers.units import duration_arg, size_arg


def non_negative(text: str) -> float:
    """A number >= 0 (0 usually means off)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return v


def positive(text: str) -> float:
    """A number > 0."""
    v = non_negative(text)
    if v == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return v


def port_number(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535")
    return v


def count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return v


def opt(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    shown: str | None = None,
    flag: str | None = None,
    cli: bool = True,
    hidden: bool = False,
) -> Any:
    """A setting: `default`, `help` for --help and the docs; `shown` is how the default is written."""
    meta = {"help": help, "parse": parse, "metavar": metavar, "shown": shown, "flag": flag,
            "cli": cli, "hidden": hidden}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    host: str = opt("127.0.0.1", "address to listen on; on loopback, pages whose origin host is exactly localhost, "
                    "127.0.0.1 or [::1] are allowed")
    port: int = opt(8765, "port; 0 picks a free one (printed)", parse=port_number)
    broker: str = opt("sqlite://", "sqlite:// (the embedded durable store in the data dir), sqlite:///PATH.db, "
                      "memory:// (nothing on disk), redis://host:port/db, rediss://... or redis+cluster://host:port",
                      metavar="URL")
    base_path: str = opt("/", "serve every endpoint and the dashboard under this prefix", metavar="PATH")
    history: int | None = opt(None, "messages kept per channel, on every broker; also the most one backfill or "
                              "history limit returns. Not given: 1000 on memory:// and redis://, no count limit "
                              "on sqlite:// (it keeps by --retention and --max-store-bytes; backfill and limit "
                              "stay at most 1000)", parse=count, metavar="N", shown="1000; sqlite:// none")
    collect_interval: float = opt(1.0, "host collector period in seconds; 0 turns it off",
                                  parse=non_negative, metavar="S")
    allowed_origins: list[str] = opt(  # noqa: RUF009 - opt() copies a list default per instance
        [], "allow browser pages from ORIGIN (repeatable; * allows all). A server reached on a DNS name lists "
        "its public origin here: a page's own origin is trusted by itself only on an IP address or loopback name",
        flag="--allowed-origin",
        metavar="ORIGIN", shown="")
    secret: str | None = opt(None, "HS256 secret (from PULSEBOARD_SECRET)", cli=False)
    public_key: str | None = opt(None, "PEM public key file: accept RS256/ES256 tokens", metavar="FILE",
                                 shown="")  # PEM text once loaded
    jwks_url: str | None = opt(None, "JWKS endpoint: accept RS256/ES256 tokens", metavar="URL", shown="")
    audience: str | None = opt(None, "require this 'aud' claim", shown="")
    issuer: str | None = opt(None, "require this 'iss' claim", shown="")
    hub: bool = opt(False, "JupyterHub service mode (POST token)", shown="off")
    max_message_size: int = opt(1 << 20, "bytes in one message, publish body or client frame", parse=count,
                                metavar="BYTES", shown="1 MiB")
    max_buffer: int = opt(8 << 20, "bytes queued for one client before it is closed with 4429", parse=count,
                          metavar="BYTES", shown="8 MiB")
    tick: float = opt(0.005, "seconds over which published messages are batched into one frame; 0 sends at once",
                      parse=non_negative, metavar="S")
    max_channels_per_client: int = opt(1000, "channels one connection may subscribe to", parse=count,
                                       flag="--max-subscriptions", metavar="N")
    max_channels: int = opt(100_000, "channels per node (memory broker)", parse=count, hidden=True)
    max_violations: int = opt(10, "protocol errors in a row before a 4400 close", parse=count, hidden=True)
    ping_interval: float = opt(10.0, "seconds between WebSocket pings; a peer silent for as long again is dropped",
                               parse=positive, metavar="S")
    heartbeat: float = opt(15.0, "SSE heartbeat period in seconds", parse=positive, hidden=True)
    poll_timeout: float = opt(25.0, "longest long-poll wait in seconds", parse=non_negative, hidden=True)
    ticket_ttl: float = opt(60.0, "ticket lifetime in seconds", parse=positive, hidden=True)
    node: str = opt("", "node name shown to clients", shown="random")
    # the embedded store (sqlite://): where it lives, how long and how much it keeps
    data_dir: str = opt("", "where sqlite:// keeps pulseboard.db (one server per store)", metavar="DIR",
                        shown="$PULSEBOARD_DATA_DIR, else $XDG_DATA_HOME/pulseboard, else ~/.local/share/pulseboard")
    retention: float = opt(30 * 86400.0, "on every broker, per channel, messages whose ts is older than this "
                           "are dropped, oldest first, checked at every publish (memory://) and in a background sweep "
                           "every quarter of AGE (at least 0.5 s, at most 60 s) (90s, 15m, 12h, 30d, 2w)",
                           parse=duration_arg, metavar="AGE", shown="30d")
    max_store_bytes: int = opt(8 << 30, "cap on the store's size (512MiB, 2GB; 0 = none): over it, every channel's "
                               "oldest messages go first", parse=size_arg, metavar="SIZE", shown="8GiB")
    # limits that keep one subject from starving the rest (docs/security.md): per subject, per node
    max_connections_per_sub: int = opt(128, "open ws/sse/poll connections one token subject may hold on a node; "
                                       "more get 429 rate_limited", parse=count, metavar="N")
    publish_rate: float = opt(100_000.0, "messages/s one subject may publish, sustained; more get 429 with "
                              "Retry-After; 0: no limit", parse=non_negative, metavar="N")
    publish_burst: int = opt(200_000, "messages one subject may publish at once", parse=count, metavar="N")
    header_timeout: float = opt(10.0, "seconds a client has to send its request line and headers (else the "
                                "connection is closed); 0: none", parse=non_negative, metavar="S")
    body_timeout: float = opt(30.0, "seconds a client has to send a request body (else 408); 0: none",
                              parse=non_negative, metavar="S")

    @property
    def prefix(self) -> str:
        """The base path without its trailing slash ('' for '/')."""
        return "/" + self.base_path.strip("/") if self.base_path.strip("/") else ""


def cli_fields() -> list[Field[Any]]:
    """The settings `pulseboard serve` takes as options (plain fields without `opt` are not among them)."""
    return [f for f in fields(Settings) if "help" in f.metadata and f.metadata["cli"]]


def flag_of(f: Field[Any]) -> str:
    return str(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    assert f.default_factory is not MISSING
    return f.default_factory()


def shown_default(f: Field[Any]) -> str:
    shown = f.metadata.get("shown")
    return str(shown) if shown is not None else str(default_of(f))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One option per CLI setting; the argparse dest is the field name."""
    for f in cli_fields():
        meta = f.metadata
        shown = shown_default(f)
        text = argparse.SUPPRESS if meta.get("hidden") else (f"{meta['help']} ({shown})" if shown else meta["help"])
        kw: dict[str, Any] = {"dest": f.name, "help": text}
        default = default_of(f)
        if isinstance(default, bool):
            kw["action"] = "store_true"
        elif isinstance(default, list):
            kw.update(action="append", default=[])
        else:
            kw.update(default=default, type=meta.get("parse") or str)
        if meta.get("metavar") and not isinstance(default, bool):
            kw["metavar"] = meta["metavar"]
        p.add_argument(flag_of(f), **kw)


def settings_table() -> str:
    """The markdown table of `pulseboard serve`'s options (docs/configuration.md holds it)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in cli_fields():
        if f.metadata.get("hidden"):
            continue
        meta, flag = f.metadata, flag_of(f)
        if not isinstance(default_of(f), bool):
            flag += " " + (meta.get("metavar") or f.name.upper())
        shown = shown_default(f)
        rows.append(f"| `{flag}` | {f'`{shown}`' if shown else ''} | {meta['help']} |")
    return "\n".join(rows) + "\n"
