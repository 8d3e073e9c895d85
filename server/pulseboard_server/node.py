"""One server node: settings, auth, broker, fan-out and metrics, shared by every transport."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pulseboard.protocol import (
    FORBIDDEN,
    ChannelSync,
    Envelope,
    Grants,
    PulseboardError,
    Start,
    check_channel,
    check_data,
    check_ts,
)

from .auth import TokenVerifier
from .brokers.base import Broker, BrokerUnavailable, Replay
from .config import Settings
from .fanout import Fanout, Subscriber
from .metrics import Metrics

log = logging.getLogger("pulseboard")


class Closable:
    async def close(self, code: int, reason: str = "") -> None: ...


class Node:
    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.settings = settings
        self.id = settings.node or uuid.uuid4().hex[:8]
        self.verifier = TokenVerifier(settings)
        self.broker = broker
        self.metrics = Metrics()
        self.fanout = Fanout(broker, self.metrics, settings.tick)
        self.clients: set[Any] = set()  # open connections with an async close(code)
        self.started = time.time()
        self.shutting_down = False
        self._started = False

    async def start(self) -> None:
        """Start the broker (once; later calls do nothing)."""
        if self._started:
            return
        self._started = True
        attach = getattr(self.broker, "attach_metrics", None)
        if attach is not None:  # brokers that can count outages and repaired gaps
            attach(self.metrics)
        await self.broker.start(self._on_message, self.fanout.on_reset)

    def _on_message(self, env: Envelope) -> None:
        self.metrics.broker_lag.set(max(0.0, time.time() - env.ts))
        self.fanout.on_message(env)

    async def stop(self) -> None:
        await self.broker.close()

    async def close_clients(self, code: int, reason: str) -> None:
        """Close every client (graceful shutdown)."""
        self.shutting_down = True
        clients = list(self.clients)
        if clients:
            await asyncio.gather(*(c.close(code, reason) for c in clients), return_exceptions=True)

    # --- shared by transports ---------------------------------------------------

    async def publish(
        self, grants: Grants, ch: object, data: object, ts: object = None, key: str | None = None
    ) -> Envelope:
        """Check and publish one message; raise `PulseboardError` saying what was wrong."""
        name = check_channel(ch)
        grants.check_publish(name)
        body = check_data(data)
        when = check_ts(ts, time.time())
        try:
            env = await self.broker.publish(name, body, when, key)
        except PulseboardError:
            self.metrics.broker_errors.inc()
            raise
        except (OSError, ConnectionError) as e:
            self.metrics.broker_errors.inc()
            raise BrokerUnavailable(f"broker unavailable ({e.__class__.__name__}): try again shortly") from None
        self.metrics.messages_in.inc()
        return env

    async def start_sync(self, sub: Subscriber, ch: str, start: Start) -> tuple[Replay, ChannelSync]:
        """Register `sub` on `ch` and fetch its replay.

        The caller sends `subscribed`, then `replay.msgs`, then whatever
        `sync.finish(epoch, last_seq)` returns; live envelopes follow from the fan-out.
        """
        sync = ChannelSync(ch)
        sub.syncs[ch] = sync
        try:
            await self.fanout.add(sub, ch)
            replay = await self.broker.replay(ch, start)
        except BaseException:
            sub.syncs.pop(ch, None)
            self.fanout.discard(sub, ch)
            raise
        self.metrics.replays.labels(recovered=str(replay.recovered).lower()).inc()
        self.metrics.replayed.inc(len(replay.msgs))
        return replay, sync

    def stop_sync(self, sub: Subscriber, ch: str) -> None:
        sub.syncs.pop(ch, None)
        self.fanout.discard(sub, ch)

    def check_readable(self, grants: Grants, channels: Sequence[str]) -> None:
        for ch in channels:
            if not grants.can_read(ch):
                raise PulseboardError(FORBIDDEN, f"token may not read {ch!r}")
