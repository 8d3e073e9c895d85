"""Prometheus metrics, one registry per app (so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge(
            "pulseboard_connections", "Open client connections", ["transport"], registry=r
        )
        self.messages_in = Counter(
            "pulseboard_messages_in", "Messages published through this node", registry=r
        )
        self.messages_out = Counter(
            "pulseboard_messages_out", "Envelopes sent to clients", ["transport"], registry=r
        )
        self.frames_out = Counter("pulseboard_frames_out", "Data frames sent to clients", registry=r)
        self.replays = Counter(
            "pulseboard_replays", "Subscriptions that replayed history", ["recovered"], registry=r
        )
        self.replayed = Counter("pulseboard_replayed_messages", "Messages sent from history", registry=r)
        self.drops = Counter(
            "pulseboard_slow_client_drops", "Clients closed for lagging (4429)", registry=r
        )
        self.errors = Counter("pulseboard_client_errors", "Error ops sent to clients", ["code"], registry=r)
        self.resets = Counter("pulseboard_resets", "Channel numbering resets seen", registry=r)
        self.broker_lag = Gauge(
            "pulseboard_broker_lag_seconds",
            "Delay between a message's timestamp and its arrival from the broker",
            registry=r,
        )
        self.broker_errors = Counter(
            "pulseboard_broker_errors", "Broker operations that failed", registry=r
        )
        self.broker_up = Gauge("pulseboard_broker_up", "1 when the broker is reachable", registry=r)
        self.gaps_repaired = Counter(
            "pulseboard_gaps_repaired", "Gaps in the broker feed filled from history", registry=r
        )
        self.broker_up.set(1)
        # The WebSocket send path counts in plain ints (no lock per client and frame); they are
        # added to the counters above when the metrics are read.
        self.ws_messages = 0
        self.ws_frames = 0
        self._ws_out = self.messages_out.labels(transport="ws")

    def settle(self) -> None:
        """Move the plain-int tallies into the Prometheus counters."""
        messages, frames, self.ws_messages, self.ws_frames = self.ws_messages, self.ws_frames, 0, 0
        if messages:
            self._ws_out.inc(messages)
        if frames:
            self.frames_out.inc(frames)

    def render(self) -> bytes:
        self.settle()
        return generate_latest(self.registry)
