"""Server settings, with the defaults the contract gives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    broker: str = "memory://"
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
    # issue 13 limits (docs/security.md): per subject, per node; 0 turns one off
    max_connections_per_sub: int = 128  # open ws/sse/poll connections of one `sub`
    publish_rate: float = 5000.0  # messages/s one `sub` may publish, sustained (429 beyond)
    publish_burst: int = 20_000  # messages one `sub` may publish at once
    header_timeout: float = 10.0  # seconds to send a request's line and headers
    body_timeout: float = 30.0  # seconds to send a request body

    @property
    def prefix(self) -> str:
        """The base path without its trailing slash ('' for '/')."""
        return "/" + self.base_path.strip("/") if self.base_path.strip("/") else ""
