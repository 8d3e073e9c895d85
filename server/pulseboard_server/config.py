"""Server settings, with the defaults the contract gives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    broker: str = "sqlite://"
    base_path: str = "/"
    history: int = 1000
    collect_interval: float = 1.0
    allowed_origins: list[str] = field(default_factory=list)
    secret: str | None = None
    public_key: str | None = None  # PEM text
    jwks_url: str | None = None
    audience: str | None = None
    issuer: str | None = None
    hub: bool = False
    max_message_size: int = 1 << 20  # bytes in one message or publish body
    max_buffer: int = 8 << 20  # bytes queued for one client before it is closed (4429)
    tick: float = 0.005  # seconds over which published messages are batched into one frame
    max_channels_per_client: int = 1000
    max_channels: int = 100_000
    max_violations: int = 10  # protocol errors in a row before a 4400 close
    ping_interval: float = 10.0
    heartbeat: float = 15.0  # SSE heartbeat period
    poll_timeout: float = 25.0
    ticket_ttl: float = 60.0
    node: str = ""
    # the embedded store (sqlite://, issue 9): where it lives, how long and how much it keeps
    data_dir: str = ""  # "" = $PULSEBOARD_DATA_DIR, else $XDG_DATA_HOME/pulseboard, else ~/.local/share/pulseboard
    retention: float = 30 * 86400.0  # seconds a message is kept on disk, per channel
    max_store_bytes: int = 8 << 30  # the whole store's size cap (0 = none); oldest messages go first

    @property
    def prefix(self) -> str:
        """The base path without its trailing slash ('' for '/')."""
        return "/" + self.base_path.strip("/") if self.base_path.strip("/") else ""
