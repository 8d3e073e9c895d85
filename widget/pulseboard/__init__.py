"""pulseboard: live metric charts in Jupyter, straight from a pulseboard server.

`LiveChart` is the notebook widget, `log` queues a message from training code and
returns at once (a background thread delivers it), `publish` sends one and waits
for its seq, and `subscribe` is an async iterator of envelopes with exact resume.
No framework (numpy, pandas, Keras) is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loghandler import LogHandler
from .publish import Publisher, PublishError, publish
from .sender import SenderStatus, flush, log, sender_status

__version__ = "0.1.0"
__all__ = [
    "Client",
    "LiveChart",
    "LogHandler",
    "PublishError",
    "Publisher",
    "SenderStatus",
    "flush",
    "log",
    "publish",
    "sender_status",
    "subscribe",
    "watch",
]

if TYPE_CHECKING:
    from .client import Client, subscribe
    from .tbwatch import watch
    from .widget import LiveChart


def __getattr__(name: str) -> Any:
    # The widget and the async client pull in anywidget / websockets only when used.
    if name == "LiveChart":
        from .widget import LiveChart

        return LiveChart
    if name in ("Client", "subscribe"):
        from . import client

        return getattr(client, name)
    if name == "watch":  # TensorBoard's protobuf classes load only when a log dir is watched
        from .tbwatch import watch

        return watch
    raise AttributeError(f"module 'pulseboard' has no attribute {name!r}")
