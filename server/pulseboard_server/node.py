"""One server node: settings, auth, broker, fan-out and metrics, shared by every transport."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from pulseboard.protocol import Envelope, PulseboardError, check_channel, check_data, check_ts

from .auth import TokenVerifier
from .brokers.base import Broker, BrokerUnavailable, PublishItem
from .config import Settings
from .fanout import Fanout
from .grants import Grants
from .limits import Limits
from .metrics import Metrics
from .session import Bounds

log = logging.getLogger("pulseboard")


class Node:
    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.settings = settings
        self.id = settings.node or uuid.uuid4().hex[:8]
        self.verifier = TokenVerifier(settings)
        self.broker = broker
        self.metrics = Metrics()
        self.limits = Limits(settings)  # connections per subject, publish rate: no subject starves the rest
        self.fanout = Fanout(broker, self.metrics, settings.tick)
        self.session_bounds = Bounds(settings.max_buffer, settings.max_message_size,
                                            settings.max_channels_per_client, settings.max_violations)
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

    async def publish_many(self, items: list[PublishItem]) -> list[Envelope]:
        """Publish already-checked `(ch, data, ts, key)` items in order: the embedded store numbers
        them together and answers after one commit (memory and Redis publish one by one)."""
        try:
            envs = await self.broker.publish_many(items)
        except PulseboardError:
            self.metrics.broker_errors.inc()
            raise
        except (OSError, ConnectionError) as e:
            self.metrics.broker_errors.inc()
            raise BrokerUnavailable(f"broker unavailable ({e.__class__.__name__}): try again shortly") from None
        self.metrics.messages_in.inc(len(envs))
        return envs
